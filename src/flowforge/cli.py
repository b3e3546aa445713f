"""The `flowforge` command: train, eval, sample, reproduce, data, fid-features and fid (see README for each)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from flowforge.errors import FlowforgeError
from flowforge.experiments.registry import EXPERIMENTS


def _train(args) -> int:
    from flowforge.evaluation.summary import METRIC_NAMES
    from flowforge.training.config import load_config
    from flowforge.training.runs import read_run_config
    from flowforge.training.trainer import Trainer

    if args.resume:
        if args.run_dir is None:
            raise FlowforgeError("--resume needs --run-dir RUN_DIR (the run to continue)")
        cfg = load_config(None, args.set, base=read_run_config(args.run_dir).to_dict())
        run_dir = Path(args.run_dir)
    else:
        if args.config is None:
            raise FlowforgeError("train needs a CONFIG.toml (or --resume --run-dir RUN_DIR)")
        cfg = load_config(args.config, args.set)
        run_dir = Path(args.run_dir or Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.device:
        cfg.train.device = args.device
    if cfg.model.name == "inn-classifier":  # a classifier: its own loop, selected on validation accuracy
        return _train_classifier(cfg, run_dir, args)
    from flowforge.training.distributed import launched_by_torchrun

    if launched_by_torchrun():  # torchrun --nproc-per-node N -m flowforge.cli train ...
        from flowforge.training.distributed_trainer import DistributedTrainer as Trainer  # noqa: N814
    trainer = Trainer(cfg, run_dir, data_dir=args.data_dir, progress=not args.no_progress)
    state = trainer.fit(resume=args.resume)
    print(f"run directory: {run_dir}")
    print(f"steps: {state.step}; best validation {METRIC_NAMES[state.metric]} {state.best_valid:.4f} at step {state.best_step}; "
          f"training time {state.elapsed_seconds:.1f} s")
    return 0


def _train_classifier(cfg, run_dir: Path, args) -> int:
    from flowforge.experiments.inn_training import train_classifier

    if args.resume:
        raise FlowforgeError("inn-classifier runs are not resumable (minutes long); train again into a new --run-dir")
    s = train_classifier(cfg, run_dir, data_dir=args.data_dir, progress=not args.no_progress)
    print(f"run directory: {run_dir}")
    print(f"steps: {s['steps']} ({s['skipped_steps']} skipped); best validation accuracy {s['best_valid_accuracy']:.4f} "
          f"at step {s['best_step']}; training time {s['train_seconds']:.1f} s")
    return 0


def _eval_classifier(args) -> int:
    from flowforge.experiments.inn_table import RESULT_FILE, evaluate_variant

    if args.split != "test" or args.checkpoint != "best":
        raise FlowforgeError("an inn-classifier run is evaluated on the test split with its best-validation checkpoint")
    r = evaluate_variant(args.run_dir, data_dir=args.data_dir, svd_images=args.svd_images, test_examples=args.examples,
                         progress=not args.no_progress)
    rec = r["reconstruction"]
    print(f"test accuracy {r['accuracy']:.4f} over {r['examples']} images (checkpoint step {r['checkpoint_step']}); "
          f"reconstruction error mean {rec['mean']}, max {rec['max']}, non-finite {rec['non_finite']}")
    print(f"wrote {Path(args.run_dir) / RESULT_FILE}")
    return 0


def _eval(args) -> int:
    from flowforge.evaluation.summary import LOG_PROB_KINDS, METRIC_NAMES
    from flowforge.training.pipeline import evaluate_run
    from flowforge.training.runs import read_run_config

    if read_run_config(args.run_dir).model.name == "inn-classifier":  # accuracy, not a density
        return _eval_classifier(args)
    if args.examples:
        raise FlowforgeError("--examples applies to inn-classifier runs; a density is evaluated over the whole split")
    r = evaluate_run(args.run_dir, split=args.split, command="flowforge " + shlex.join(sys.argv[1:]),
                     data_dir=args.data_dir, which=args.checkpoint, samples=args.samples, batch_size=args.batch_size,
                     device=args.device or "auto", progress=not args.no_progress,
                     importance_samples=args.importance_samples, repeats=args.repeats)
    metric = r["metric"]
    print(f"{args.split} {METRIC_NAMES[metric]}: {r[metric]:.4f} ± {r[metric + '_std_err']:.4f} over "
          f"{r['examples']} examples (checkpoint {r['checkpoint']}, step {r['step']}); {LOG_PROB_KINDS[r['log_prob']]}")
    if "elbo_gap" in r:  # importance-sampling estimate of a model trained by an ELBO
        spread = "n/a (one repeat)" if r["is_relative_std"] is None else f"{r['is_relative_std']:.3g}"
        print(f"importance sampling: K = {r['importance_samples']}, {r['repeats']} repeats; ELBO {r[metric + '_elbo']:.4f}, "
              f"gap {r['elbo_gap']:.4g} (relative {r['elbo_relative_gap']:.3g}); estimator relative std {spread}")
    return 0


def _sample(args) -> int:
    from flowforge.training.data_sources import ImageSource, make_source
    from flowforge.training.report import write_report
    from flowforge.training.runs import RunPaths, load_trained, select_device
    from flowforge.viz import image_figures

    device = select_device(args.device or "auto")
    cfg, model, _ = load_trained(args.run_dir, which=args.checkpoint, device=device)
    samples_dir = RunPaths(Path(args.run_dir)).samples
    source = make_source(cfg, args.data_dir)
    written = []
    if not isinstance(source, ImageSource):
        if args.sweep or args.interpolate or args.class_edit:
            raise FlowforgeError("--sweep, --interpolate and --class-edit need an image model")
        gen = torch.Generator(device=device).manual_seed(args.seed)
        with torch.no_grad():
            points = model.sample(args.n, args.temperature, generator=gen).cpu()
        out = Path(args.out) if args.out else samples_dir / f"samples-T{args.temperature:g}.pt"
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(points, out)
        written += [out, source.write_samples(model, samples_dir / "density", args.temperature, gen)]
    else:
        out = Path(args.out) if args.out else samples_dir / f"samples-T{args.temperature:g}.png"
        written.append(image_figures.sample_grid(model, out, args.n, args.temperature, args.seed))
        if args.sweep:
            written.append(image_figures.temperature_sweep(model, samples_dir / "temperature-sweep.png", args.seed))
        if args.interpolate:
            written.append(image_figures.interpolation_figure(model, samples_dir / "interpolation.png",
                                                              source.split("test"), args.pairs, args.seed))
        if args.class_edit:
            src, dst = (int(v) for v in args.class_edit.split(":"))
            written.append(image_figures.class_edit_figure(model, samples_dir / f"class-edit-{src}-to-{dst}.png",
                                                           source.split("test"), src, dst, args.pairs))
    write_report(args.run_dir)
    for path in written:
        if path is not None:
            print(f"wrote {path}")
    return 0


def _reproduce(args) -> int:
    from flowforge.experiments.registry import reproduce_function

    out = args.out_dir or f"runs/{args.name}"
    kwargs = {"steps": args.steps, "minutes": args.minutes}
    if args.config:
        kwargs["config"] = args.config
    if args.profile:  # vae-flow
        kwargs["profile"] = args.profile
    if args.fid_samples:
        kwargs["fid_samples"] = args.fid_samples
    print(reproduce_function(args.name)(out, data_dir=args.data_dir, progress=not args.no_progress, **kwargs))
    print(f"table written to {out}/results.md")
    return 0


def _diagnose(args) -> int:
    from flowforge.diagnostics.diagnose import diagnose_run

    out = args.out or str(Path(args.run_dir) / "diagnostics")
    r = diagnose_run(args.run_dir, split=args.split, examples=args.examples, out=out, ood=args.ood,
                     ood_examples=args.ood_examples, data_dir=args.data_dir, which=args.checkpoint, seed=args.seed,
                     command="flowforge " + shlex.join(sys.argv[1:]), jacobian_examples=args.jacobian_examples,
                     condition_examples=args.condition_examples, iters=args.iters)
    rec = r["reconstruction"]
    print(f"reconstruction error over {rec['examples']} {args.split} examples: mean {rec['mean']}, max {rec['max']}, "
          f"non-finite {rec['non_finite']} ({rec['share_non_finite']:.2%})")
    print(f"wrote {out}/report.md, {out}/diagnose.json")
    return 0


def _attack(args) -> int:
    from flowforge.diagnostics.attack_run import attack_run

    out = args.out or str(Path(args.run_dir) / "attack")
    summary, _ = attack_run(args.run_dir, split=args.split, examples=args.examples, steps=args.steps,
                            step_size=args.step_size, out=out, seed=args.seed, data_dir=args.data_dir,
                            which=args.checkpoint, command="flowforge " + shlex.join(sys.argv[1:]),
                            progress=not args.no_progress, screen=args.screen)
    final = summary["final"]
    print(f"attack ({summary['steps']} steps, eps {summary['epsilon']:g}) on {final['examples']} images: final "
          f"reconstruction error mean {final['mean']}, max {final['max']}, non-finite {final['non_finite']}")
    print(f"wrote {out}/attack.json, {out}/attack-curve.png, {out}/attack-worst.png")
    return 0


def _bench(args) -> int:
    from flowforge.bench.cli import run_bench_command

    return run_bench_command(args)


def _fid_features(args) -> int:
    from flowforge.evaluation.fid_features import train_feature_network

    out = args.out or f"runs/fid-features/{args.dataset}"
    meta = train_feature_network(args.dataset, out, epochs=args.epochs, seed=args.seed, data_dir=args.data_dir,
                                 progress=not args.no_progress)
    print(f"feature network in {out}: test accuracy {100 * meta['test_accuracy']:.2f}% after {meta['epochs']} epochs "
          f"({meta['train_seconds']:.0f} s)")
    return 0


def _fid(args) -> int:
    import json

    from flowforge.data.images import load_image_split
    from flowforge.evaluation.fid import fid_of_sampler, sampler_for
    from flowforge.evaluation.fid_features import inception_extractor, inception_weights_path, load_feature_network
    from flowforge.training.runs import load_trained, read_run_config, select_device

    if args.inception_weights and args.features:
        raise FlowforgeError("fid: give --features DIR or --inception-weights PATH, not both")
    weights = inception_weights_path(args.inception_weights) if not args.features else None
    if not weights and not args.features:
        raise FlowforgeError("fid needs --features DIR (a network from flowforge fid-features train) or "
                             "--inception-weights PATH (pytorch-fid's weights file; or $FLOWFORGE_INCEPTION_WEIGHTS)")
    device = select_device(args.device or "auto")
    extractor = inception_extractor(weights, device) if weights else load_feature_network(args.features, device)
    cfg = read_run_config(args.run_dir)
    _, model, state = load_trained(args.run_dir, which=args.checkpoint, device=device)
    test = load_image_split(cfg.data.dataset, "test", data_dir=args.data_dir or cfg.data.data_dir or None).images
    try:
        sampler = sampler_for(model, args.temperature, use_glow=not args.no_glow)
    except ValueError as err:
        raise FlowforgeError(str(err)) from None
    result = fid_of_sampler(sampler, extractor, test, args.n, model.n_bits, args.seed, device, not args.no_progress)
    result.update(temperature=args.temperature, glow=not args.no_glow, checkpoint=state["checkpoint"],
                  step=state["step"], command="flowforge " + shlex.join(sys.argv[1:]))
    tag = f"fid-n{args.n}-T{args.temperature if args.temperature is not None else 'default'}" + ("-noglow" if args.no_glow else "")
    tag += "-inception" if weights else ""  # never overwrite a feature-classifier FID of the same settings
    (Path(args.run_dir) / f"{tag}.json").write_text(json.dumps(result, indent=2))
    print(f"FID {result['fid']:.3f} over {args.n} samples vs {args.n} test images; extractor: {result['extractor']}")
    return 0


def _data(args) -> int:
    from flowforge.data import find_dataset_dir

    for name in args.names:
        print(f"{name}: {find_dataset_dir(name, args.data_dir, download=not args.no_download)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowforge", description="Flow-based generative models: train, evaluate, sample, diagnose, attack, benchmark and reproduce paper experiments.")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data root (beats FLOWFORGE_DATA and the config's data.data_dir)")
    common.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("train", parents=[common], help="train a model from a TOML config")
    p.add_argument("config", nargs="?", help="CONFIG.toml (omit with --resume)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override a config field")
    p.add_argument("--run-dir", help="run directory (default runs/CONFIG-TIMESTAMP)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", parents=[common], help="bits/dim of a trained run over a whole split")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["test", "valid", "train"], default="test")
    p.add_argument("--samples", type=int, help="dequantisation draws per example (default eval.samples)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--importance-samples", type=int, help="lgf-* models: K of the IS estimate (default model.test_samples)")
    p.add_argument("--repeats", type=int, help="lgf-* models: independent IS evaluations (default model.test_repeats)")
    p.add_argument("--examples", type=int, default=0,
                   help="inn-classifier runs: the first N test images (default all); density models use the whole split")
    p.add_argument("--svd-images", type=int, default=100,
                   help="inn-classifier runs: test images for the power-iteration singular values")
    p.set_defaults(func=_eval)

    p = sub.add_parser("sample", parents=[common], help="sample grids, temperature sweep, interpolation, class edit")
    p.add_argument("run_dir")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG path for the grid (default RUN_DIR/samples/samples-T<temperature>.png)")
    p.add_argument("--sweep", action="store_true", help="also a temperature sweep (rows T = 0 ... 1)")
    p.add_argument("--interpolate", action="store_true", help="also interpolations between test images")
    p.add_argument("--pairs", type=int, default=4, help="pairs for --interpolate / images for --class-edit")
    p.add_argument("--class-edit", metavar="FROM:TO", help="also move images of class FROM along mean(TO) - mean(FROM)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.set_defaults(func=_sample)

    p = sub.add_parser("reproduce", parents=[common], help="a paper experiment end to end, with its table")
    p.add_argument("name", choices=sorted(EXPERIMENTS))
    p.add_argument("--out-dir", help="where the runs and results.md go (default runs/NAME)")
    p.add_argument("--config", help="base config (default configs/NAME.toml)")
    p.add_argument("--steps", type=int, help="training steps per run (default: the config's max_steps)")
    p.add_argument("--minutes", type=float,
                   help="glow-permutations, inn-table, stability-2d: training time per variant instead of --steps")
    p.add_argument("--profile", choices=["paper", "cpu-small"], help="vae-flow: network sizes and budgets (default cpu-small)")
    p.add_argument("--fid-samples", type=int, help="vae-flow: samples (and test images) per FID (default 10000)")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("diagnose", parents=[common], help="stability diagnostics of a trained run (report + plots)")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["test", "valid", "train"], default="test")
    p.add_argument("--examples", type=int, default=1000, help="examples of the split for reconstruction errors")
    p.add_argument("--out", help="output folder (default RUN_DIR/diagnostics)")
    p.add_argument("--ood", action="store_true", help="also the out-of-distribution probes (image models)")
    p.add_argument("--ood-examples", type=int, default=256, help="inputs per out-of-distribution probe")
    p.add_argument("--jacobian-examples", type=int, default=2, help="examples for the exact float64 spectra")
    p.add_argument("--condition-examples", type=int, default=8, help="examples for power-iteration condition numbers")
    p.add_argument("--iters", type=int, default=20, help="power iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.set_defaults(func=_diagnose)

    p = sub.add_parser("attack", parents=[common], help="invertibility attack inside the dequantisation cell")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["test", "valid", "train"], default="test")
    p.add_argument("--examples", type=int, default=32)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--step-size", type=float, default=5e-4)
    p.add_argument("--screen", type=int, default=0, metavar="N",
                   help="attack the --examples images of the first N whose round trip is worst (default: the first ones)")
    p.add_argument("--out", help="output folder (default RUN_DIR/attack)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.set_defaults(func=_attack)

    from flowforge.bench.cli import add_bench_parser

    add_bench_parser(sub, common, _bench)

    p = sub.add_parser("fid-features", parents=[common], help="train the feature network used for FID")
    p.add_argument("action", choices=["train"])
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="fashion-mnist")
    p.add_argument("--out", help="output folder (default runs/fid-features/DATASET)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_fid_features)

    p = sub.add_parser("fid", parents=[common], help="FID of a trained image model's samples against the test set")
    p.add_argument("run_dir")
    p.add_argument("--features", help="feature network folder (from flowforge fid-features train)")
    p.add_argument("--inception-weights", help="pytorch-fid's Inception weights file (pt_inception-2015-12-05-6726825d"
                   ".pth; default $FLOWFORGE_INCEPTION_WEIGHTS when --features is not given)")
    p.add_argument("--n", type=int, default=10000, help="samples and test images")
    p.add_argument("--temperature", type=float, help="vae-flow: Glow-layer temperature (default the model's, 0.5); "
                   "other models: sampling temperature (default 1)")
    p.add_argument("--no-glow", action="store_true", help="vae-flow: the decoder mean, without the Glow layer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.set_defaults(func=_fid)

    p = sub.add_parser("data", help="find (or download into the per-user cache) the named data sets")
    p.add_argument("names", nargs="+", choices=["mnist", "fashion-mnist"])
    p.add_argument("--data-dir", help="data root (beats FLOWFORGE_DATA)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    p.set_defaults(func=_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FlowforgeError as err:
        print(f"flowforge {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; training progress was checkpointed (continue with: flowforge train --resume --run-dir RUN_DIR)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
