"""Householder flow (Tomczak & Welling 2016, "Improving Variational Auto-Encoders using
Householder Flow", section 3): a product of k reflections

    H_t = I - 2 v_t v_t^T / ||v_t||^2,     forward:  z = H_k ... H_1 x,     log|det| = 0

Each reflection is orthogonal and its own inverse, so the inverse applies H_1 ... H_k (reverse
order). Here the vectors v_t are learned parameters; in the paper they are produced by the VAE
encoder per example. Not conditional: a context raises a ValueError.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection, zero_logdet
from flowforge.errors import ShapeError


class Householder(Bijection):
    """k Householder reflections of (B, dim) inputs, vectors (k, dim) initialised N(0, 1)."""

    def __init__(self, dim: int, reflections: int = 1):
        super().__init__()
        if dim < 1 or reflections < 1:
            raise ValueError(f"Householder needs dim >= 1 and reflections >= 1, got {dim}, {reflections}")
        self.dim = dim
        self.vectors = nn.Parameter(torch.randn(reflections, dim))

    def _check(self, x: Tensor, context: Tensor | None) -> None:
        if context is not None:
            raise ValueError("Householder takes no context (it is not a conditional layer)")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"Householder({self.dim}) expects (B, {self.dim}), got {tuple(x.shape)}")

    def _reflect(self, x: Tensor, order: range) -> Tensor:
        vectors = self.vectors.to(x.dtype)
        for t in order:
            v = vectors[t]
            x = x - (2 * (x @ v) / (v @ v))[:, None] * v
        return x

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, context)
        return self._reflect(x, range(len(self.vectors))), zero_logdet(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z, context)
        return self._reflect(z, range(len(self.vectors) - 1, -1, -1)), zero_logdet(z)
