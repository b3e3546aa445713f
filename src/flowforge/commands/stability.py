"""`flowforge diagnose` and `flowforge attack`: the stability toolkit on a trained run."""

from __future__ import annotations

from pathlib import Path

from flowforge.commands.context_runs import refuse_context_run
from flowforge.commands.invocation import command_line


def diagnose(args) -> int:
    from flowforge.runs.diagnose_run import diagnose_run

    refuse_context_run(args.run_dir, "diagnose")
    out = args.out or str(Path(args.run_dir) / "diagnostics")
    r = diagnose_run(args.run_dir, split=args.split, examples=args.examples, out=out, ood=args.ood,
                     ood_examples=args.ood_examples, data_dir=args.data_dir, which=args.checkpoint, seed=args.seed,
                     command=command_line(), jacobian_examples=args.jacobian_examples,
                     condition_examples=args.condition_examples, iters=args.iters)
    rec = r["reconstruction"]
    print(f"reconstruction error over {rec['examples']} {args.split} examples: mean {rec['mean']}, max {rec['max']}, "
          f"non-finite {rec['non_finite']} ({rec['share_non_finite']:.2%})")
    print(f"wrote {out}/report.md, {out}/diagnose.json")
    return 0


def attack(args) -> int:
    from flowforge.runs.attack_run import attack_run

    refuse_context_run(args.run_dir, "attack")
    out = args.out or str(Path(args.run_dir) / "attack")
    summary, _ = attack_run(args.run_dir, split=args.split, examples=args.examples, steps=args.steps,
                            step_size=args.step_size, out=out, seed=args.seed, data_dir=args.data_dir,
                            which=args.checkpoint, command=command_line(),
                            progress=not args.no_progress, screen=args.screen)
    final = summary["final"]
    print(f"attack ({summary['steps']} steps, eps {summary['epsilon']:g}) on {final['examples']} images: final "
          f"reconstruction error mean {final['mean']}, max {final['max']}, non-finite {final['non_finite']}")
    print(f"wrote {out}/attack.json, {out}/attack-curve.png, {out}/attack-worst.png")
    return 0


def add_parser(sub, common) -> None:
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
    p.set_defaults(func=diagnose)

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
    p.set_defaults(func=attack)
