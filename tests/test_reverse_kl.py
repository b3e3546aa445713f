"""Reverse-KL training (Rezende & Mohamed 2015): the loss is an unbiased estimate of
KL(q || p) - log Z (checked against the analytic KL of two Gaussians), gradient descent on it
recovers a correlated 2-D Gaussian's mean and covariance, and the four energies of table 1
have the stated form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from flowforge import Flow
from flowforge.bijections import Bijection
from flowforge.distributions import StandardNormal
from flowforge.models import create
from flowforge.objectives.energies import ENERGIES, energy_log_density
from flowforge.objectives.reverse_kl import annealed_beta, reverse_kl_loss

MEAN = torch.tensor([1.0, -0.5])
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]]) * 0.5


class _Affine(Bijection):
    """x = loc + exp(log_scale) * z elementwise: q = N(loc, diag(exp(2 log_scale)))."""

    def __init__(self, loc, log_scale):
        super().__init__()
        self.loc, self.log_scale = nn.Parameter(torch.tensor(loc)), nn.Parameter(torch.tensor(log_scale))

    def forward(self, x, context=None):
        return (x - self.loc) * (-self.log_scale).exp(), -self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z, context=None):
        return self.loc + z * self.log_scale.exp(), self.log_scale.sum().expand(z.shape[0])


def _target(normalised: bool):
    p = torch.distributions.MultivariateNormal(MEAN, COV)
    shift = 0.0 if normalised else 3.0  # an unnormalised target: log p~ = log p + 3, so log Z = 3
    return p, lambda x: p.log_prob(x) + shift


def test_the_loss_is_an_unbiased_estimate_of_the_kl_minus_log_z():
    loc, log_scale = [0.3, 0.2], [-0.2, 0.1]
    flow = Flow(_Affine(loc, log_scale), StandardNormal((2,)))
    p, log_density = _target(normalised=False)
    q = torch.distributions.MultivariateNormal(torch.tensor(loc), torch.diag(torch.tensor(log_scale).exp() ** 2))
    analytic = torch.distributions.kl_divergence(q, p).item() - 3.0
    g = torch.Generator().manual_seed(0)
    estimates = torch.stack([reverse_kl_loss(flow, log_density, 1000, generator=g).detach() for _ in range(200)])
    std_err = estimates.std().item() / math.sqrt(len(estimates))
    # 200 independent means of 1000 draws: their mean within 4 standard errors of the analytic value
    assert abs(estimates.mean().item() - analytic) < 4 * std_err
    assert std_err < 0.05  # not vacuous: the bound above is tighter than 0.2 nats


def test_reverse_kl_recovers_a_correlated_gaussian():
    """An IAF (one-pass sampling) fitted by 400 Adam steps of 256 draws: mean within 0.1 and
    covariance within 0.1 (entrywise) of the target, estimated from 20000 samples."""
    torch.manual_seed(0)
    flow = create("iaf", dim=2, layers=2, hidden=[16, 16])
    _, log_density = _target(normalised=False)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(400):
        loss = reverse_kl_loss(flow, log_density, 256, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        x = flow.sample(20000, generator=torch.Generator().manual_seed(2))
    assert (x.mean(0) - MEAN).abs().max() < 0.1
    assert (torch.cov(x.T) - COV).abs().max() < 0.1


def test_energies_of_table_1():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0]])
    u2 = ENERGIES["u2"](z)
    torch.testing.assert_close(u2, 0.5 * ((z[:, 1] - torch.sin(math.pi * z[:, 0] / 2)) / 0.4) ** 2)
    assert ENERGIES["u1"](torch.tensor([[2.0, 0.0]])) < ENERGIES["u1"](torch.tensor([[0.0, 0.0]]))  # on the ring
    for name in ENERGIES:
        assert energy_log_density(name)(torch.randn(5, 2)).shape == (5,)
    with pytest.raises(ValueError, match="unknown energy"):
        energy_log_density("u5")
    assert annealed_beta(0) == 0.01 and annealed_beta(20000) == 1.0
