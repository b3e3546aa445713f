"""Checks of the config fields that are lists (data.augment, train.lr_decay_steps / epochs) and
of how the training-recipe fields combine; config.py runs them on every config it reads, so a bad
value fails where it enters, naming the file and the field."""

from __future__ import annotations

from flowforge.data.augment import AUGMENTATIONS
from flowforge.data.registry import dataset_kind
from flowforge.errors import ConfigError


def _milestones(values, where: str) -> None:
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{where}: expected positive integers in increasing order, got {list(values)!r}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ConfigError(f"{where}: expected positive integers in increasing order, got {list(values)!r}")


def check_recipe(cfg, source: str) -> None:
    """ConfigError for a bad augmentation list or learning-rate schedule of `cfg` (a RunConfig)."""
    ops = cfg.data.augment
    for op in ops:
        if op not in AUGMENTATIONS:
            raise ConfigError(f"{source}: data.augment: expected any of {list(AUGMENTATIONS)}, got {list(ops)!r}")
    if len(set(ops)) != len(ops):
        raise ConfigError(f"{source}: data.augment: each augmentation at most once, got {list(ops)!r}")
    if ops and dataset_kind(cfg.data.dataset) != "image":
        raise ConfigError(f"{source}: data.augment: augmentation is for image data sets; "
                          f"{cfg.data.dataset!r} is not one")
    t = cfg.train
    _milestones(t.lr_decay_steps, f"{source}: train.lr_decay_steps")
    _milestones(t.lr_decay_epochs, f"{source}: train.lr_decay_epochs")
    has_milestones = bool(t.lr_decay_steps) or bool(t.lr_decay_epochs)
    if t.lr_decay_steps and t.lr_decay_epochs:
        raise ConfigError(f"{source}: train.lr_decay_steps and train.lr_decay_epochs: give one of the two")
    if t.lr_schedule == "step" and not has_milestones:
        raise ConfigError(f"{source}: train.lr_schedule = \"step\" needs train.lr_decay_steps or train.lr_decay_epochs")
    if t.lr_schedule != "step" and has_milestones:
        raise ConfigError(f"{source}: train.lr_decay_steps / lr_decay_epochs apply to lr_schedule = \"step\", "
                          f"not {t.lr_schedule!r}")
    if t.lr_schedule == "step" and t.lr_decay_factor <= 0:
        raise ConfigError(f"{source}: train.lr_decay_factor: expected a value in (0, 1], got {t.lr_decay_factor!r}")


__all__ = ["check_recipe"]
