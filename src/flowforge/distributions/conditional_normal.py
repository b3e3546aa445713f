"""A diagonal Gaussian whose mean and log standard deviation are functions of a context:
N(z; mean(c), diag(exp(log_std(c)))^2), the conditional base of conditional density estimation
(e.g. nflows' ConditionalDiagonalNormal). The network maps (B, context_dim) to 2 * prod(event_shape)
values, the first half the mean; it starts at zero output, so the base starts as N(0, I)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from flowforge.distributions.base import Distribution
from flowforge.distributions.gaussian import diag_gaussian_from_noise, diag_gaussian_log_prob
from flowforge.errors import ShapeError
from flowforge.nets.mlp import MLP


class ConditionalDiagonalGaussian(Distribution):
    """Mean and log-std from an MLP of the context (`hidden` widths, ReLU, zero-initialised output)."""

    uses_context = True

    def __init__(self, event_shape, context_dim: int, hidden: Sequence[int] = (64,)):
        super().__init__(event_shape)
        if context_dim < 1:
            raise ValueError(f"context_dim must be positive, got {context_dim}")
        self.context_dim = int(context_dim)
        size = math.prod(self.event_shape)
        self.net = MLP(self.context_dim, 2 * size, tuple(hidden), "relu", zero_output=True)

    def params(self, context: Tensor | None, batch: int | None = None) -> tuple[Tensor, Tensor]:
        if context is None:
            raise ValueError(f"{type(self).__name__} needs a context of shape (B, {self.context_dim})")
        c = context.reshape(context.shape[0], -1) if context.dim() > 1 else context[:, None]
        if c.shape[1] != self.context_dim:
            raise ShapeError(f"context must be (B, {self.context_dim}), got {tuple(context.shape)}")
        if batch is not None and c.shape[0] != batch:
            raise ShapeError(f"need one context per example: {batch} examples, {c.shape[0]} contexts")
        h = self.net(c if torch.is_floating_point(c) else c.to(self._reference.dtype))
        mean, log_std = h.chunk(2, dim=1)
        return mean.reshape(-1, *self.event_shape), log_std.reshape(-1, *self.event_shape)

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self.check_event(z)
        mean, log_std = self.params(context, z.shape[0])
        return diag_gaussian_log_prob(z, mean.to(z.dtype), log_std.to(z.dtype))

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        mean, log_std = self.params(context, n)
        return diag_gaussian_from_noise(mean, log_std, float(temperature) * self.noise(n, generator).to(mean.dtype))
