"""`flowforge reproduce NAME`: a paper experiment end to end (experiments/registry.py)."""

from __future__ import annotations

from pathlib import Path

from flowforge.experiments.registry import EXPERIMENTS


def run(args) -> int:
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
    tables = sorted(Path(out).glob("results*.md"), key=lambda f: f.stat().st_mtime)
    print(f"table written to {tables[-1] if tables else Path(out) / 'results.md'}")
    return 0


def add_parser(sub, common) -> None:
    p = sub.add_parser("reproduce", parents=[common], help="a paper experiment end to end, with its table")
    p.add_argument("name", choices=sorted(EXPERIMENTS))
    p.add_argument("--out-dir", help="where the runs and results.md go (default runs/NAME)")
    p.add_argument("--config", help="base config (default configs/NAME.toml)")
    p.add_argument("--steps", type=int, help="training steps per run (default: the config's max_steps)")
    p.add_argument("--minutes", type=float,
                   help="glow-permutations, inn-table, stability-2d: training time per variant instead of --steps")
    p.add_argument("--profile", choices=["paper", "cpu-small"], help="vae-flow: network sizes and budgets (default cpu-small)")
    p.add_argument("--fid-samples", type=int, help="vae-flow: samples (and test images) per FID (default 10000)")
    p.set_defaults(func=run)
