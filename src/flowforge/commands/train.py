"""`flowforge train`: any model through the Trainer (or torchrun's DistributedTrainer); a
classifier such as the inn-classifier is selected on validation accuracy."""

from __future__ import annotations

import time
from pathlib import Path

from flowforge.errors import FlowforgeError


def run(args) -> int:
    from flowforge.evaluation.summary import METRIC_NAMES
    from flowforge.runs.config import load_config
    from flowforge.runs.run_dir import read_run_config
    from flowforge.training.distributed import launched_by_torchrun

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
    if launched_by_torchrun():  # torchrun --nproc-per-node N -m flowforge.cli train ...
        from flowforge.runs.distributed_trainer import DistributedTrainer as trainer_class
    else:
        from flowforge.runs.trainer import Trainer as trainer_class
    trainer = trainer_class(cfg, run_dir, data_dir=args.data_dir, progress=not args.no_progress)
    state = trainer.fit(resume=args.resume)
    print(f"run directory: {run_dir}")
    print(f"steps: {state.step}; best validation {METRIC_NAMES[state.metric]} {state.best_valid:.4f} at step {state.best_step}; "
          f"training time {state.elapsed_seconds:.1f} s")
    return 0


def add_parser(sub, common) -> None:
    p = sub.add_parser("train", parents=[common], help="train a model from a TOML config")
    p.add_argument("config", nargs="?", help="CONFIG.toml (omit with --resume)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override a config field")
    p.add_argument("--run-dir", help="run directory (default runs/CONFIG-TIMESTAMP)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.set_defaults(func=run)
