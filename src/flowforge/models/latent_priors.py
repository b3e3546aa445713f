"""Priors p(z) over the VAE latent (Morrow & Chiu 2020, section 3.2; Dai & Wipf 2019).

Every prior offers `log_prob(z, generator=None) -> (B,)` and `sample(n, temperature, generator)`.

- `GaussianLatentPrior`: N(0, I); also the closed-form KL(q(z|x) || p(z)).
- `FlowLatentPrior`: p(z) = N(h(z); 0, I) |det dh/dz| with h a flat RealNVP (the paper: 16
  layers, each of two fully connected 1024-unit ReLU layers); exact density.
- `SecondStageVAE`: Dai & Wipf's second-stage VAE over z; `log_prob` is its ELBO, a lower
  bound on log p(z) (so every bits/dim built on it stays an upper bound).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowforge.distributions.gaussian import diag_gaussian_log_prob, diag_gaussian_sample
from flowforge.models.flat_realnvp import FlatRealNVP


def gaussian_kl(mean: Tensor, log_std: Tensor) -> Tensor:
    """KL(N(mean, exp(log_std)^2) || N(0, I)) per example (Kingma & Welling 2014, appendix B)."""
    return 0.5 * (mean**2 + torch.exp(2 * log_std) - 2 * log_std - 1).flatten(1).sum(1)


class GaussianLatentPrior(nn.Module):
    has_closed_form_kl = True

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def log_prob(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return diag_gaussian_log_prob(z)

    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> Tensor:
        return torch.randn(n, self.dim, generator=generator, device=device) * temperature


class FlowLatentPrior(nn.Module):
    """A flat RealNVP prior. It reuses `FlatRealNVP` without its batch-norm flows (a prior
    density must not depend on the batch); that model's coupling uses a ReLU MLP for the shift
    and a tanh MLP for the log-scale, each with the `hidden` widths."""

    has_closed_form_kl = False

    def __init__(self, dim: int, layers: int = 16, hidden: Sequence[int] = (1024, 1024)):
        super().__init__()
        self.dim = dim
        self.flow = FlatRealNVP(dim, layers=layers, hidden=tuple(hidden), batch_norm=False)

    def log_prob(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.flow.log_prob(z)

    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> Tensor:
        return self.flow.sample(n, temperature, generator=generator)


class _DenseWithSkip(nn.Module):
    """`depth` dense ReLU layers of `width`; the input is concatenated to the last hidden layer
    before the output head (the TwoStageVAE code's `concat([z, t])`, NOTES c.1)."""

    def __init__(self, in_features: int, out_features: int, width: int, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        features = in_features
        for _ in range(depth):
            layers += [nn.Linear(features, width), nn.ReLU()]
            features = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width + in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.cat([x, self.body(x)], dim=1))


class SecondStageVAE(nn.Module):
    """Dai & Wipf's stage-2 VAE on z (NOTES c.1): encoder u ~ N(mu_u(z), sigma_u(z)^2), decoder
    z ~ N(z_hat(u), gamma_z^2 I) with one learned scalar gamma_z (log-gamma initialised at 0),
    prior u ~ N(0, I), latent size equal to z's. Sampling: u ~ N(0, T^2 I), z = z_hat(u) + gamma_z eps."""

    has_closed_form_kl = False

    def __init__(self, dim: int, width: int = 1024, depth: int = 3):
        super().__init__()
        self.dim = dim
        self.encoder = _DenseWithSkip(dim, 2 * dim, width, depth)
        self.decoder = _DenseWithSkip(dim, dim, width, depth)
        self.log_gamma = nn.Parameter(torch.zeros(()))

    def log_prob(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The one-sample ELBO of z: E_q[log p(z|u)] - KL(q(u|z) || N(0, I)), a lower bound on log p(z)."""
        mean_u, log_std_u = self.encoder(z).chunk(2, dim=1)
        u = diag_gaussian_sample(mean_u, log_std_u, generator=generator)
        return diag_gaussian_log_prob(z, self.decoder(u), self.log_gamma) - gaussian_kl(mean_u, log_std_u)

    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> Tensor:
        u = torch.randn(n, self.dim, generator=generator, device=device) * temperature
        z_hat = self.decoder(u)
        return z_hat + self.log_gamma.exp() * torch.randn(z_hat.shape, generator=generator, device=device)
