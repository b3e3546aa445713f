"""`flowforge reproduce NAME`: a paper experiment end to end (experiments/registry.py)."""

from __future__ import annotations

from pathlib import Path

from flowforge.errors import FlowforgeError
from flowforge.experiments.registry import EXPERIMENTS


def _accepted(name: str, function, kwargs: dict) -> dict:
    """`kwargs` that `function` takes; a given option it does not take is a FlowforgeError."""
    import inspect

    params = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    refused = [k for k, v in kwargs.items() if k not in params and v is not None]
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        takes = sorted("--" + k.replace("_", "-") for k in ("steps", "minutes", "config", "profile", "fid_samples",
                                                             "data_dir", "seeds")
                       if k in params)
        raise FlowforgeError(f"reproduce {name} does not take {flags} (it takes: {', '.join(takes) or 'no options'})")
    return {k: v for k, v in kwargs.items() if k in params}


def run(args) -> int:
    from flowforge.experiments.registry import reproduce_function

    for flag, value in (("--steps", args.steps), ("--fid-samples", args.fid_samples), ("--seeds", args.seeds)):
        if value is not None and value < 1:
            raise FlowforgeError(f"{flag} {value}: expected at least 1")
    if args.minutes is not None and not 0 < args.minutes < float("inf"):
        raise FlowforgeError(f"--minutes {args.minutes}: expected a finite number > 0")
    out = args.out_dir or f"runs/{args.name}"
    kwargs = {"steps": args.steps, "minutes": args.minutes, "data_dir": args.data_dir}
    if args.config:
        kwargs["config"] = args.config
    if args.profile:  # vae-flow
        kwargs["profile"] = args.profile
    if args.fid_samples:
        kwargs["fid_samples"] = args.fid_samples
    if args.seeds:  # glow-permutations
        kwargs["seeds"] = args.seeds
    function = reproduce_function(args.name)
    kwargs = _accepted(args.name, function, kwargs)
    print(function(out, progress=not args.no_progress, **kwargs))
    tables = sorted(Path(out).glob("results*.md"), key=lambda f: f.stat().st_mtime)
    print(f"table written to {tables[-1] if tables else Path(out) / 'results.md'}")
    return 0


def add_parser(sub, common) -> None:
    p = sub.add_parser("reproduce", parents=[common], help="a paper experiment end to end, with its table")
    p.add_argument("name", choices=sorted(EXPERIMENTS))
    p.add_argument("--out-dir", help="where the runs and results.md go (default runs/NAME)")
    p.add_argument("--config", help="base config, a file or a shipped config's name (default: the experiment's)")
    p.add_argument("--steps", type=int, help="training steps per run (default: the config's max_steps)")
    p.add_argument("--minutes", type=float,
                   help="training time per run instead of --steps (refused by experiments without a time budget)")
    p.add_argument("--profile", choices=["paper", "cpu-small"], help="vae-flow: network sizes and budgets (default cpu-small)")
    p.add_argument("--fid-samples", type=int,
                   help="vae-flow (default 10000), flow-gan (default 5000): samples (and test images) per FID")
    p.add_argument("--seeds", type=int, help="glow-permutations: seeds per variant, 0 .. N-1 (default 3)")
    p.set_defaults(func=run)
