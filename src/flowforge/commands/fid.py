"""`flowforge fid-features` (train the project's FID feature network) and `flowforge fid` (FID of a
run's samples against the test images, with the project network or the Inception v3 features)."""

from __future__ import annotations

from pathlib import Path

from flowforge.commands.invocation import command_line
from flowforge.errors import FlowforgeError


def train_features(args) -> int:
    from flowforge.evaluation.fid_features import train_feature_network

    out = args.out or f"runs/fid-features/{args.dataset}"
    meta = train_feature_network(args.dataset, out, epochs=args.epochs, seed=args.seed, data_dir=args.data_dir,
                                 progress=not args.no_progress)
    print(f"feature network in {out}: test accuracy {100 * meta['test_accuracy']:.2f}% after {meta['epochs']} epochs "
          f"({meta['train_seconds']:.0f} s)")
    return 0


def fid(args) -> int:
    import json

    from flowforge.commands.context_runs import refuse_context_run
    from flowforge.data.images import load_image_split
    from flowforge.evaluation.fid import fid_of_sampler, sampler_for
    from flowforge.evaluation.fid_features import inception_extractor, inception_weights_path, load_feature_network
    from flowforge.runs.run_dir import load_trained, read_run_config, select_device

    refuse_context_run(args.run_dir, "fid")
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
                  step=state["step"], command=command_line())
    temperature = args.temperature if args.temperature is not None else "default"
    tag = f"fid-n{args.n}-T{temperature}" + ("-noglow" if args.no_glow else "")
    tag += "-inception" if weights else ""  # never overwrite a feature-classifier FID of the same settings
    (Path(args.run_dir) / f"{tag}.json").write_text(json.dumps(result, indent=2))
    print(f"FID {result['fid']:.3f} over {args.n} samples vs {args.n} test images; extractor: {result['extractor']}")
    return 0


def add_parser(sub, common) -> None:
    p = sub.add_parser("fid-features", parents=[common], help="train the feature network used for FID")
    p.add_argument("action", choices=["train"])
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="fashion-mnist")
    p.add_argument("--out", help="output folder (default runs/fid-features/DATASET)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=train_features)

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
    p.set_defaults(func=fid)
