"""`flowforge eval`: the figure of a trained run over a whole split (bits/dim, NLL, an IS estimate with
its ELBO gap, or an inn-classifier's accuracy)."""

from __future__ import annotations

from pathlib import Path

from flowforge.commands.invocation import command_line
from flowforge.errors import FlowforgeError


def run(args) -> int:
    from flowforge.evaluation.summary import LOG_PROB_KINDS, METRIC_NAMES
    from flowforge.runs.pipeline import evaluate_run
    from flowforge.runs.run_dir import read_run_config

    for flag, value in (("--batch-size", args.batch_size), ("--samples", args.samples),
                        ("--importance-samples", args.importance_samples), ("--repeats", args.repeats),
                        ("--svd-images", args.svd_images)):
        if value is not None and value < 1:
            raise FlowforgeError(f"{flag} {value}: expected at least 1")
    if args.examples < 0:
        raise FlowforgeError(f"--examples {args.examples}: expected 0 (the whole split) or more")
    if read_run_config(args.run_dir).model.name == "inn-classifier":  # accuracy, not a density
        return _eval_classifier(args)
    r = evaluate_run(args.run_dir, split=args.split, command=command_line(),
                     data_dir=args.data_dir, which=args.checkpoint, samples=args.samples, batch_size=args.batch_size,
                     device=args.device or "auto", progress=not args.no_progress,
                     importance_samples=args.importance_samples, repeats=args.repeats, examples=args.examples)
    metric = r["metric"]
    over = (f"the first {r['examples']} of {r['split_examples']} examples (not the run's figure)"
            if args.examples else f"{r['examples']} examples")
    print(f"{args.split} {METRIC_NAMES[metric]}: {r[metric]:.4f} ± {r[metric + '_std_err']:.4f} over "
          f"{over} (checkpoint {r['checkpoint']}, step {r['step']}); {LOG_PROB_KINDS[r['log_prob']]}")
    if "bpd_given_label" in r:  # a class-conditional Glow: the figure above is the marginal's
        print(f"class-conditional: the figure above is p(x), the equal-weight mixture over the labels; given the "
              f"true labels {r['bpd_given_label']:.4f} ± {r['bpd_given_label_std_err']:.4f} bits/dim")
    if "elbo_gap" in r:  # importance-sampling estimate of a model trained by an ELBO
        spread = "n/a (one repeat)" if r["is_relative_std"] is None else f"{r['is_relative_std']:.3g}"
        print(f"importance sampling: K = {r['importance_samples']}, {r['repeats']} repeats; ELBO {r[metric + '_elbo']:.4f}, "
              f"gap {r['elbo_gap']:.4g} (relative {r['elbo_relative_gap']:.3g}); estimator relative std {spread}")
    if "box_kl_gap" in r:  # a reverse-KL fit to an energy (runs/energy_source.py)
        print(f"log Z of the target on [-4, 4]^2 (quadrature) {r['box_log_z']:.4f}; gap = KL to the boxed target "
              f"{r['box_kl_gap']:.4f} nats")
    from flowforge.viz.nonfinite import recorded

    for path, n, total in recorded(Path(args.run_dir)):
        print(f"warning: the run's figure {path} has {n} of {total} non-finite samples (NaN or inf; see report.md)")
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


def add_parser(sub, common) -> None:
    p = sub.add_parser("eval", parents=[common], help="bits/dim of a trained run over a whole split (or its first N)")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["test", "valid", "train"], default="test")
    p.add_argument("--samples", type=int, help="dequantisation draws per example (default eval.samples)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--importance-samples", type=int, help="lgf-* models: K of the IS estimate (default model.test_samples)")
    p.add_argument("--repeats", type=int, help="lgf-* models: independent IS evaluations (default model.test_repeats)")
    p.add_argument("--examples", type=int, default=0,
                   help="score only the split's first N examples (default all); for a density this is a quick or "
                        "partial look, written to eval-SPLIT-firstN.json, not the run's figure")
    p.add_argument("--svd-images", type=int, default=100,
                   help="inn-classifier runs: test images for the power-iteration singular values")
    p.set_defaults(func=run)
