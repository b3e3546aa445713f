"""A learnable mixture of diagonal Gaussians as a flow's base density (the base of "MAF MoG",
Papamakarios et al. 2017; the mixture density of Bishop 2006, "Pattern Recognition and Machine
Learning", eq. 9.7):

    p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)),     pi = softmax(logits),  sigma_k = exp(log_std_k)
    log p(z) = logsumexp_k [log pi_k + sum_d log N(z_d; mu_kd, sigma_kd^2)]   (one value per example)

Sampling draws a component index, then a Gaussian sample: the discrete draw is not
reparameterisable, so `sample` returns samples without gradients and there is no `rsample`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowforge.distributions.base import Distribution, refuse_context
from flowforge.distributions.gaussian import LOG_2PI
from flowforge.errors import ShapeError


class GaussianMixture(Distribution):
    """``components`` diagonal Gaussians over (B, dim) vectors with learned weights, means and
    log standard deviations (means start N(0, 1), log-stds at 0, weights uniform)."""

    def __init__(self, dim: int, components: int):
        if dim < 1 or components < 1:
            raise ValueError(f"GaussianMixture needs dim >= 1 and components >= 1, got {dim}, {components}")
        super().__init__((dim,))
        self.reparameterised = False
        self.dim, self.components = dim, components
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.randn(components, dim))
        self.log_stds = nn.Parameter(torch.zeros(components, dim))

    def component_log_prob(self, z: Tensor) -> Tensor:
        """log pi_k + log N(z; mu_k, sigma_k^2) for every example and component: (B, components)."""
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ShapeError(f"GaussianMixture({self.dim}) expects (B, {self.dim}), got {tuple(z.shape)}")
        means, log_stds = self.means.to(z.dtype), self.log_stds.to(z.dtype)
        scaled = (z[:, None, :] - means) * torch.exp(-log_stds)
        gaussian = -0.5 * (LOG_2PI + 2 * log_stds + scaled.pow(2)).sum(-1)
        return torch.log_softmax(self.logits.to(z.dtype), dim=0) + gaussian

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(z) per example, shape (B,)."""
        refuse_context(self, context)
        return torch.logsumexp(self.component_log_prob(z), dim=1)

    @torch.no_grad()
    def sample(self, n: int, temperature=1.0, context: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """n samples (n, dim), each component's standard deviation scaled by `temperature`; no gradients."""
        refuse_context(self, context)
        temperature = float(temperature)
        weights = torch.softmax(self.logits, dim=0)
        index = torch.multinomial(weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, device=self.means.device, dtype=self.means.dtype)
        return self.means[index] + temperature * self.log_stds[index].exp() * eps

    def mean(self) -> Tensor:
        """E[z] = sum_k pi_k mu_k, shape (dim,)."""
        return torch.softmax(self.logits, dim=0) @ self.means

    def covariance(self) -> Tensor:
        """Cov[z] = sum_k pi_k (diag(sigma_k^2) + mu_k mu_k^T) - E[z] E[z]^T, shape (dim, dim)."""
        weights = torch.softmax(self.logits, dim=0)
        second = torch.einsum("k,ki,kj->ij", weights, self.means, self.means)
        second = second + torch.diag(weights @ self.log_stds.mul(2).exp())
        mean = self.mean()
        return second - torch.outer(mean, mean)
