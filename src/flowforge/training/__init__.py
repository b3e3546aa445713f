"""The library's training pieces: a plain training loop with hooks, EMA, speed switches,
step-boundary interrupts and multi-process helpers (the run-directory trainer is `flowforge.runs`)."""

from flowforge.training.ema import EMA
from flowforge.training.loop import fit
from flowforge.training.optimizers import make_optimizer
from flowforge.training.speed import SpeedOptions, apply_speed_options

__all__ = ["EMA", "SpeedOptions", "apply_speed_options", "fit", "make_optimizer"]
