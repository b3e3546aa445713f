"""Diagonal Gaussian densities, summed per example."""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def diag_gaussian_log_prob(x: Tensor, mean: Tensor | float = 0.0, log_std: Tensor | float = 0.0) -> Tensor:
    """log N(x; mean, exp(log_std)^2) summed over all but the batch dimension -> (B,)."""
    log_std = torch.as_tensor(log_std, dtype=x.dtype, device=x.device)
    per_dim = -0.5 * (LOG_2PI + 2 * log_std + (x - mean) ** 2 * torch.exp(-2 * log_std))
    return per_dim.flatten(1).sum(1) if per_dim.dim() > 1 else per_dim


def diag_gaussian_sample(mean: Tensor, log_std: Tensor, temperature: float = 1.0,
                         generator: torch.Generator | None = None) -> Tensor:
    """mean + exp(log_std) * temperature * eps (Glow's temperature: the std is scaled by T)."""
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return diag_gaussian_from_noise(mean, log_std, temperature * eps)


def diag_gaussian_from_noise(mean: Tensor, log_std: Tensor, scaled_eps: Tensor) -> Tensor:
    """The sample of `diag_gaussian_sample` for given noise `scaled_eps` = temperature * eps."""
    return mean + log_std.exp() * scaled_eps
