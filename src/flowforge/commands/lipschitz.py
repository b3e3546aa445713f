"""`flowforge lipschitz`: analytic Lipschitz bounds of every block of a trained flow beside the
empirical local Lipschitz constants (Behrmann et al. 2021, supplement A / B)."""

from __future__ import annotations

from pathlib import Path

from flowforge.commands.invocation import command_line


def lipschitz(args) -> int:
    from flowforge.runs.lipschitz_run import lipschitz_run

    out = args.out or args.run_dir
    r = lipschitz_run(args.run_dir, split=args.split, examples=args.examples, out=out, data_dir=args.data_dir,
                      which=args.checkpoint, seed=args.seed, iters=args.iters, conv=args.conv_norm,
                      command=command_line())
    flow = r["flow"]
    print(f"{len(r['blocks'])} blocks; whole flow: forward bound {flow['forward_bound']:.4g} (empirical "
          f"{flow['forward_empirical']:.4g}), inverse bound {flow['inverse_bound']:.4g} (empirical "
          f"{flow['inverse_empirical']:.4g}); violations: {len(r['violations'])}")
    for v in r["violations"]:
        print(f"  VIOLATION {v}")
    print(f"wrote {Path(out) / 'lipschitz.md'}, {Path(out) / 'lipschitz.json'}")
    return 1 if r["violations"] else 0


def add_parser(sub, common) -> None:
    p = sub.add_parser("lipschitz", parents=[common],
                       help="analytic Lipschitz bounds per block beside the empirical local constants")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["test", "valid", "train"], default="test")
    p.add_argument("--examples", type=int, default=4, help="examples at which the empirical constants are taken")
    p.add_argument("--out", help="output folder (default RUN_DIR)")
    p.add_argument("--iters", type=int, default=20, help="power iterations (blocks above 128 dimensions)")
    p.add_argument("--conv-norm", choices=["operator", "fft"], default="operator",
                   help="k x k convolution norms: the operator's own (exact up to 2048 dimensions a side, else power "
                        "iteration), or the FFT upper bound")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.set_defaults(func=lipschitz)
