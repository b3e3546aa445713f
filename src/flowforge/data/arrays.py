"""Flat (tabular and 2-D) data sets: float32 arrays of shape (N, D) in three splits."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowforge.errors import ShapeError


@dataclass(frozen=True)
class ArraySplits:
    """Train / validation / test arrays of one data set, each float32 (N, D) with the same D."""

    name: str
    train: Tensor
    valid: Tensor
    test: Tensor

    def __post_init__(self) -> None:
        dims = set()
        for split in ("train", "valid", "test"):
            t = getattr(self, split)
            if not isinstance(t, Tensor) or t.dim() != 2:
                raise ShapeError(f"{self.name}: {split} must be a 2-D tensor (N, D), got "
                                 f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
            if t.dtype != torch.float32:
                raise TypeError(f"{self.name}: {split} must be float32, got {t.dtype}")
            dims.add(t.shape[1])
        if len(dims) != 1:
            raise ShapeError(f"{self.name}: splits disagree on the dimension: {sorted(dims)}")

    @property
    def dim(self) -> int:
        return self.train.shape[1]

    def split(self, name: str) -> Tensor:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {name!r}; expected train, valid or test")
        return getattr(self, name)
