"""A run directory: where each file lives, and how to rebuild a model from one.

    RUN_DIR/config.toml            the resolved config (every field)
    RUN_DIR/checkpoints/last/      the latest checkpoint (resume from here)
    RUN_DIR/checkpoints/best/      the checkpoint with the best validation bits/dim
    RUN_DIR/metrics.csv            one row per log / validation event
    RUN_DIR/samples/               sample grids written during training and by `flowforge sample`
    RUN_DIR/eval-SPLIT.json        results of `flowforge eval`
    RUN_DIR/report.md              a short human-readable summary
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from flowforge.data import CLASS_NAMES
from flowforge.errors import CheckpointError, ConfigError
from flowforge.models import FlowModel, create
from flowforge.runs.checkpoint import checkpoint_exists, load_checkpoint
from flowforge.runs.config import RunConfig, config_from_dict, load_config


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def last(self) -> Path:
        return self.root / "checkpoints" / "last"

    @property
    def best(self) -> Path:
        return self.root / "checkpoints" / "best"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    def eval_result(self, split: str, examples: int = 0) -> Path:
        """The whole split's evaluation (the run's figure), or that of its first `examples` only."""
        return self.root / (f"eval-{split}-first{examples}.json" if examples else f"eval-{split}.json")


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device = 'cuda' but no CUDA device is available")
    return torch.device(name)


def build_model(cfg: RunConfig, data_args: dict) -> FlowModel:
    """The model a config describes, with the arguments that come from the data (`data_args`,
    e.g. image shape and bits, or the dimension), its random initial weights drawn from
    train.seed without touching the global RNG."""
    options = dict(cfg.model.options)
    num_classes = options.get("num_classes", 0)
    expected = len(CLASS_NAMES.get(cfg.data.dataset, ()))
    if num_classes not in (0, expected):
        raise ConfigError(f"model.num_classes = {num_classes}, but {cfg.data.dataset} has {expected} classes "
                          "(use 0 for an unconditional model)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        try:
            return create(cfg.model.name, **options, **data_args)
        except ValueError as err:  # options that do not fit the data (e.g. more levels than the image allows)
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"model {cfg.model.name!r} on {cfg.data.dataset}: {err}") from None


def _data_args(stored: dict) -> dict:
    """JSON turned tuples into lists; constructors take shapes as given."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}


def read_run_config(run_dir: str | Path) -> RunConfig:
    paths = RunPaths(Path(run_dir))
    if not paths.root.is_dir():
        raise CheckpointError(f"{paths.root}: no such run directory")
    return load_config(paths.config)


def load_trained(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """(config, model with EMA weights in eval mode, checkpoint state) from a run directory.

    `which` = "best" (selected on validation; falls back to "last" when no validation ran) or "last".
    """
    paths = RunPaths(Path(run_dir))
    cfg = read_run_config(run_dir)
    ckpt = paths.best if which == "best" and checkpoint_exists(paths.best) else paths.last
    if not checkpoint_exists(ckpt):
        raise CheckpointError(f"{ckpt}: no checkpoint in run directory {paths.root}")
    state = load_checkpoint(ckpt, map_location="cpu")
    for key, kind in (("config", dict), ("model_data_args", dict), ("step", int)):
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise CheckpointError(f"{ckpt}/state.json: '{key}' is missing or not a {kind.__name__}")
    stored = config_from_dict(state["config"], source=f"{ckpt}/state.json")
    model = build_model(stored, _data_args(state["model_data_args"]))
    weights = ckpt / "ema.safetensors"
    load_checkpoint(ckpt, ema=model) if weights.is_file() else load_checkpoint(ckpt, model=model)
    state["checkpoint"] = str(ckpt)
    return cfg, model.to(device).eval(), state
