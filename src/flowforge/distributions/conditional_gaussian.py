"""Conditional diagonal Gaussians p(u | z) and q(u | x) of localised generative flows (LGF paper
eq. 3 and §3.3; NOTES b.3): a network maps the conditioning tensor to 2 * U channels, the first
half the mean and the second the log standard deviation; samples are reparameterised
(u = mean + exp(log_std) * eps) so gradients of the ELBO reach the network."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowforge.distributions.gaussian import diag_gaussian_log_prob, diag_gaussian_sample
from flowforge.errors import ShapeError


class ConditionalDiagGaussian(nn.Module):
    """N(u; mean(c), diag(exp(log_std(c))^2)) with (mean, log_std) = net(c) split along dim 1."""

    def __init__(self, net: nn.Module, u_channels: int):
        super().__init__()
        self.net, self.u_channels = net, int(u_channels)

    def parameters_of(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(cond).to(cond.dtype)
        if h.shape[1] != 2 * self.u_channels:
            raise ShapeError(f"ConditionalDiagGaussian: the network must give {2 * self.u_channels} channels "
                             f"(mean, log-std), got {tuple(h.shape)}")
        mean, log_std = h.chunk(2, dim=1)
        return mean, log_std

    def log_prob(self, u: Tensor, cond: Tensor) -> Tensor:
        """log N(u; mean(cond), std(cond)^2), summed per example -> (B,)."""
        mean, log_std = self.parameters_of(cond)
        return diag_gaussian_log_prob(u, mean, log_std)

    def rsample(self, cond: Tensor, temperature: float = 1.0,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """A reparameterised draw u and its log-density under this distribution (temperature 1)."""
        mean, log_std = self.parameters_of(cond)
        u = diag_gaussian_sample(mean, log_std, temperature, generator)
        return u, diag_gaussian_log_prob(u, mean, log_std)
