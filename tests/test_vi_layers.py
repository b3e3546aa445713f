"""Variational-inference layers (planar and radial flows, Rezende & Mohamed 2015; Householder
flow, Tomczak & Welling 2016) and the Gaussian-mixture base density.

The layers get the contract checks of tests/bijection_checks.py (each refuses a context); then
their invertibility constraints under adversarial parameters, the accuracy of the planar root find
and the radial closed-form inverse, and the orthogonality of the Householder product. The mixture:
log_prob against torch.distributions, its integral over a 2-D grid, and sample moments against
the mixture's mean and covariance.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from bijection_checks import CHECKS, LayerCase
from flowforge.bijections import Householder, Planar, Radial
from flowforge.distributions import GaussianMixture
from flowforge.errors import ShapeError

F64 = torch.float64

CASES = [
    LayerCase("planar", lambda: Planar(5), (5,), noise=0.5),
    LayerCase("planar-1d", lambda: Planar(1), (1,), noise=0.5),
    LayerCase("radial", lambda: Radial(4), (4,), noise=0.5, input_std=1.0),
    LayerCase("radial-1d", lambda: Radial(1), (1,), noise=0.5, input_std=1.0),
    LayerCase("householder", lambda: Householder(5, reflections=3), (5,)),
    LayerCase("householder-1d", lambda: Householder(1), (1,)),
]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract(case, check):
    CHECKS[check](case)


# --------------------------------------------------------------------------- planar


@pytest.mark.parametrize("wu", [-5.0, -3.0, 0.0, 4.0, 30.0])
def test_planar_invertible_and_inverse_exact_for_any_u(wu):
    """w^T u_hat > -1 for these u; the inverse reaches 1e-12 in float64 where the map is nearly
    flat along w (slope softplus(-5) = 7e-3 at w^T x + b = 0) or strongly stretched."""
    torch.manual_seed(0)
    layer = Planar(4).double()
    with torch.no_grad():
        layer.w.copy_(torch.tensor([0.6, -0.8, 0.3, 0.1], dtype=F64))
        layer.u.copy_(wu * layer.w / (layer.w @ layer.w) + torch.tensor([0.2, 0.15, 0.0, -0.1], dtype=F64))
        layer.b.fill_(0.3)
        assert (layer.w @ layer.u_hat()).item() > -1
        x = 3 * torch.randn(200, 4, dtype=F64)
        x[0] = -layer.b * layer.w / (layer.w @ layer.w)  # w^T x + b = 0: the flattest point
        z, logdet = layer(x)
        x_back, logdet_back = layer.inverse(z)
    assert torch.isfinite(logdet).all()
    assert (x_back - x).abs().max().item() < 1e-12 * (1 + x.abs().max().item())
    assert (logdet + logdet_back).abs().max().item() < 1e-8


def test_planar_log_det_stays_finite_near_the_non_invertible_limit():
    """w^T u = -50: w^T u_hat = -1 + 2e-22 rounds to -1 in float64, yet the log-slope at
    w^T x + b = 0 is log softplus(-50) = -50, not -inf."""
    layer = Planar(2).double()
    with torch.no_grad():
        layer.w.copy_(torch.tensor([1.0, 0.0], dtype=F64))
        layer.u.copy_(torch.tensor([-50.0, 1.0], dtype=F64))
        layer.b.zero_()
        _, logdet = layer(torch.tensor([[0.0, 0.3], [2.0, 0.0]], dtype=F64))
    torch.testing.assert_close(logdet[0], torch.log(torch.nn.functional.softplus(torch.tensor(-50.0, dtype=F64))))
    assert torch.isfinite(logdet).all()


def test_planar_u_hat_leaves_valid_u_alone_along_w_only():
    """u_hat differs from u by a multiple of w, and w^T u_hat = -1 + softplus(w^T u)."""
    layer = Planar(3)
    with torch.no_grad():
        u_hat = layer.u_hat()
        w, u = layer.w, layer.u
        residual = (u_hat - u) - ((u_hat - u) @ w) / (w @ w) * w
    assert residual.abs().max().item() < 1e-6
    torch.testing.assert_close(w @ u_hat, torch.nn.functional.softplus(w @ u) - 1)


# --------------------------------------------------------------------------- radial


def test_radial_constraint_holds_for_extreme_raw_parameters():
    layer = Radial(3).double()
    for raw_alpha, raw_beta in ((-30.0, -30.0), (-30.0, 30.0), (30.0, -30.0), (5.0, -40.0)):
        with torch.no_grad():
            layer.raw_alpha.fill_(raw_alpha)
            layer.raw_beta.fill_(raw_beta)
            alpha, beta = layer.alpha_beta()
            assert alpha.item() > 0 and beta.item() >= -alpha.item()
            x = layer.x0 + torch.cat([torch.zeros(1, 3, dtype=F64), torch.randn(8, 3, dtype=F64)])
            z, logdet = layer(x)
            _, logdet_back = layer.inverse(z)
        # finite even where alpha + beta = softplus(-30) ~ 1e-13 is below alpha's rounding
        assert torch.isfinite(logdet).all() and torch.isfinite(logdet_back).all()


@pytest.mark.parametrize("raw_beta", [-6.0, -2.0, 0.0, 3.0])
def test_radial_inverse_is_exact(raw_beta):
    """The closed-form inverse is exact in float64 for points at, near and far from the centre,
    down to alpha + beta = softplus(-6) = 2.5e-3 (the map then contracts ~100-fold near x0)."""
    layer = Radial(3).double()
    with torch.no_grad():
        layer.raw_alpha.fill_(-1.0)
        layer.raw_beta.fill_(raw_beta)
        x = layer.x0 + torch.cat([torch.zeros(1, 3, dtype=F64), 1e-8 * torch.randn(3, 3, dtype=F64),
                                  torch.randn(20, 3, dtype=F64), 100 * torch.randn(3, 3, dtype=F64)])
        z, logdet = layer(x)
        x_back, logdet_back = layer.inverse(z)
    assert torch.isfinite(logdet).all()
    torch.testing.assert_close(x_back, x, rtol=1e-12, atol=1e-12)
    assert (logdet + logdet_back).abs().max().item() < 1e-10


# --------------------------------------------------------------------------- Householder


def test_householder_is_the_product_of_reflections_and_orthogonal():
    torch.manual_seed(1)
    layer = Householder(4, reflections=3).double()
    x = torch.randn(1, 4, dtype=F64)
    jac = jacobian(lambda u: layer(u.view(1, 4))[0].flatten(), x.flatten())
    product = torch.eye(4, dtype=F64)
    for v in layer.vectors.detach():
        product = (torch.eye(4, dtype=F64) - 2 * torch.outer(v, v) / (v @ v)) @ product
    torch.testing.assert_close(jac, product, rtol=0, atol=1e-12)
    torch.testing.assert_close(jac.T @ jac, torch.eye(4, dtype=F64), rtol=0, atol=1e-12)
    single = Householder(4).double()
    with torch.no_grad():
        twice = single(single(x)[0])[0]
    torch.testing.assert_close(twice, x, rtol=0, atol=1e-12)  # a reflection is its own inverse


# --------------------------------------------------------------------------- Gaussian mixture


def _mixture(dim: int = 2, components: int = 3, seed: int = 0) -> GaussianMixture:
    torch.manual_seed(seed)
    mixture = GaussianMixture(dim, components)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        mixture.logits.copy_(torch.randn(components, generator=gen))
        mixture.means.copy_(2 * torch.randn(components, dim, generator=gen))
        mixture.log_stds.copy_(0.4 * torch.randn(components, dim, generator=gen))
    return mixture


def test_mixture_log_prob_matches_torch_distributions():
    mixture = _mixture(3, 4).double()
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=mixture.logits.detach()),
        torch.distributions.Independent(torch.distributions.Normal(mixture.means.detach(),
                                                                   mixture.log_stds.detach().exp()), 1),
    )
    z = 3 * torch.randn(16, 3, dtype=F64)
    log_prob = mixture.log_prob(z)
    assert log_prob.shape == (16,)
    torch.testing.assert_close(log_prob.detach(), reference.log_prob(z), rtol=0, atol=1e-12)
    # the first example alone gives the same value: per example, no mixing across the batch
    torch.testing.assert_close(mixture.log_prob(z[:1])[0], log_prob[0], rtol=0, atol=0)


def test_mixture_log_prob_integrates_to_one():
    mixture = _mixture().double()
    step = 0.04
    axis = torch.arange(-12, 12 + step / 2, step, dtype=F64)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        total = mixture.log_prob(grid).exp().sum().item() * step**2
    assert abs(total - 1) < 1e-6


def test_mixture_sample_moments():
    mixture = _mixture()
    samples = mixture.sample(200_000, generator=torch.Generator().manual_seed(3))
    assert samples.shape == (200_000, 2) and not samples.requires_grad
    with torch.no_grad():
        mean, covariance = mixture.mean(), mixture.covariance()
    torch.testing.assert_close(samples.mean(0), mean, rtol=0, atol=0.03)
    torch.testing.assert_close(torch.cov(samples.T), covariance, rtol=0, atol=0.05)
    first, again = (mixture.sample(5, generator=torch.Generator().manual_seed(4)) for _ in range(2))
    torch.testing.assert_close(again, first, rtol=0, atol=0)  # the generator fixes the draw
    cold = mixture.sample(50, temperature=0.0)
    distance = (cold[:, None, :] - mixture.means.detach()[None]).abs().sum(-1).min(1).values
    assert distance.max().item() == 0  # temperature 0: every sample sits on a component mean


def test_mixture_gradients_and_boundaries():
    mixture = _mixture()
    (-mixture.log_prob(torch.randn(8, 2)).mean()).backward()
    for name, p in mixture.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ShapeError, match=r"\(B, 2\)"):
        mixture.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="context"):
        mixture.log_prob(torch.zeros(4, 2), context=torch.zeros(4, 1))
