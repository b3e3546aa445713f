"""The `flowforge` command: train, eval, sample, reproduce, diagnose, attack, bench, fid-features, fid
and data (see README for each). Each subcommand lives in flowforge/commands/ (bench in bench/cli.py)."""

from __future__ import annotations

import argparse
import sys

from flowforge.commands import COMMAND_MODULES, lipschitz
from flowforge.errors import FlowforgeError
from flowforge.training.interrupts import TrainingInterrupted


def _bench(args) -> int:
    from flowforge.bench.cli import run_bench_command

    return run_bench_command(args)


class _OneLineParser(argparse.ArgumentParser):
    """A bad argument is one line on stderr (and exit 2), as every other flowforge error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="flowforge", description="Flow-based generative models: train, evaluate, sample, diagnose, "
                                                              "attack, benchmark and reproduce paper experiments.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data root (beats FLOWFORGE_DATA and the config's data.data_dir)")
    common.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")

    for module in (*COMMAND_MODULES, lipschitz):
        module.add_parser(sub, common)

    from flowforge.bench.cli import add_bench_parser

    add_bench_parser(sub, common, _bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TrainingInterrupted as err:  # SIGINT / SIGTERM, stopped at a step boundary with a checkpoint
        print(f"flowforge {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except FlowforgeError as err:
        message = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())  # always one line
        print(f"flowforge {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside the trainer's step-boundary stop: set-up, eval, bench, ...
        hint = (" (checkpoints written so far are kept: flowforge train --resume --run-dir RUN_DIR)"
                if args.command == "train" else "")
        print(f"flowforge {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
