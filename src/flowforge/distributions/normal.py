"""Gaussian base densities: the standard normal and a learned diagonal Gaussian, both of a fixed
event shape (flat (D,) or image-shaped (C, H, W))."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowforge.distributions.base import Distribution, refuse_context
from flowforge.distributions.gaussian import diag_gaussian_from_noise, diag_gaussian_log_prob


class StandardNormal(Distribution):
    """N(0, I) over `event_shape`; temperature T draws N(0, T^2 I)."""

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        refuse_context(self, context)
        self.check_event(z)
        return diag_gaussian_log_prob(z)

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        refuse_context(self, context)
        return self.noise(n, generator) * float(temperature)


class DiagonalGaussian(Distribution):
    """N(mean, diag(exp(log_std))^2) with learned `mean` and `log_std` of the event shape (zero init)."""

    def __init__(self, event_shape):
        super().__init__(event_shape)
        self.mean = nn.Parameter(torch.zeros(self.event_shape))
        self.log_std = nn.Parameter(torch.zeros(self.event_shape))

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        refuse_context(self, context)
        self.check_event(z)
        return diag_gaussian_log_prob(z, self.mean.to(z.dtype), self.log_std.to(z.dtype))

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        refuse_context(self, context)
        eps = torch.randn((n, *self.event_shape), generator=generator, device=self.mean.device,
                          dtype=self.mean.dtype)
        return diag_gaussian_from_noise(self.mean, self.log_std, float(temperature) * eps)
