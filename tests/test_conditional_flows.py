"""Conditional flows (docs/conditional-flows.md): the affine coupling's conditioner reads the
context, layers without a context input refuse one, every flat model takes `context_dim`, its
log-density changes with the context, samples with a context have the right shape, the float64
change of variables holds at a fixed context, and (x, context) batches train through `loss`."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from bijection_checks import CHECKS, LayerCase
from flowforge import Flow
from flowforge.bijections import Chain, Inverse, MAFStep, ReversePermutation, SplineCoupling
from flowforge.bijections.masked_coupling import MaskedAffineCoupling, alternating_mask, checkerboard_mask
from flowforge.bijections.planar import Planar
from flowforge.bijections.residual import ResidualBlock
from flowforge.distributions import ConditionalDiagonalGaussian, StandardNormal
from flowforge.models import create
from flowforge.nets.lipschitz import lipschitz_mlp
from flowforge.nets.mlp import MLP


def _coupling(dim: int, context_dim: int) -> MaskedAffineCoupling:
    n_in = dim + context_dim
    return MaskedAffineCoupling(alternating_mask(dim), shift_net=MLP(n_in, dim, [8], "relu"),
                                log_scale_net=MLP(n_in, dim, [8]), context_dim=context_dim)


def _image_coupling() -> MaskedAffineCoupling:
    net = torch.nn.Sequential(torch.nn.Conv2d(2 + 3, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(8, 4, 1))
    return MaskedAffineCoupling(checkerboard_mask(2, 3, 3), net=net, context_dim=3)


CASES = [
    LayerCase("affine-coupling-context", lambda: _coupling(4, 2), (4,), context_dim=2),
    LayerCase("affine-coupling-no-context", lambda: _coupling(4, 0), (4,)),
    LayerCase("affine-coupling-image-context", _image_coupling, (2, 3, 3), context_dim=3),
    LayerCase("maf-step-no-context", lambda: MAFStep(3, [8]), (3,)),
    LayerCase("iaf-step-context", lambda: Inverse(MAFStep(3, [8], context_dim=2)), (3,), context_dim=2),
]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_layer_contract(case, check):
    CHECKS[check](case)


@pytest.mark.parametrize("layer", [Planar(3), ResidualBlock(lipschitz_mlp(3, (8,), 0.9), (3,))], ids=["planar", "residual"])
def test_layers_without_a_context_input_refuse_one(layer):
    for direction in ("forward", "inverse"):
        with pytest.raises(ValueError, match="context"):
            getattr(layer, direction)(torch.zeros(2, 3), context=torch.zeros(2, 1))


FLAT = {
    "maf": {"layers": 2, "hidden": [8, 8]},
    "flat-realnvp": {"layers": 2, "hidden": [8]},
    "nsf": {"layers": 2, "hidden": [8], "bins": 4},
    "nsf-ar": {"layers": 2, "hidden": [8, 8], "bins": 4},
    "iaf": {"layers": 2, "hidden": [8, 8]},
    "planar": {"layers": 3},
    "flat-resflow": {"blocks": 1, "hidden": [8]},
}


def _conditional(name: str, dim: int = 2, context_dim: int = 3, seed: int = 0, **extra):
    torch.manual_seed(seed)
    model = create(name, dim=dim, context_dim=context_dim, **FLAT[name], **extra)
    model.initialize(torch.randn(64, dim), torch.randn(64, context_dim))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # zero-initialised conditioners would make the context check vacuous
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


def test_the_examples_of_the_brief_build():
    assert create("maf", dim=2, context_dim=3).context_dim == 3
    assert isinstance(create("nsf", dim=2, context_dim=1).base, ConditionalDiagonalGaussian)
    assert isinstance(create("nsf", dim=2, context_dim=1, base="standard").base, StandardNormal)
    with pytest.raises(ValueError, match="context_dim"):
        create("maf", dim=2, base="conditional-gaussian")
    with pytest.raises(ValueError, match="conditional"):
        create("planar", dim=2, context_dim=1, base="standard")  # the context would reach nothing


@pytest.mark.parametrize("name", FLAT)
def test_log_prob_depends_on_the_context_and_samples_are_shaped(name):
    model = _conditional(name)
    g = torch.Generator().manual_seed(5)
    x, c = torch.randn(6, 2, generator=g), torch.randn(6, 3, generator=g)
    with torch.no_grad():
        lp, lp_other = model.log_prob(x, c), model.log_prob(x, c + 1.0)
        samples = model.sample(6, context=c, generator=torch.Generator().manual_seed(0))
        again = model.sample(6, context=c + 1.0, generator=torch.Generator().manual_seed(0))
    assert lp.shape == (6,) and torch.isfinite(lp).all()
    assert (lp - lp_other).abs().min() > 1e-4, f"{name}: log p(x | c) does not depend on c"
    assert samples.shape == (6, 2) and torch.isfinite(samples).all()
    assert not torch.allclose(samples, again, atol=1e-4)
    with pytest.raises(ValueError, match="context"):
        model.log_prob(x)
    with pytest.raises(ValueError, match="context"):
        create(name, dim=2, **FLAT[name]).log_prob(x, c)  # an unconditional model refuses one


@pytest.mark.parametrize("name", ["maf", "flat-realnvp", "nsf", "nsf-ar", "iaf"])
def test_float64_change_of_variables_at_a_fixed_context(name):
    model = _conditional(name, dim=3, context_dim=2).double()
    g = torch.Generator().manual_seed(7)
    x, c = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(2, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        lp = model.log_prob(x, c)
    for i in range(2):
        ci = c[i : i + 1]
        jac = jacobian(lambda v: model.encode(v[None], ci)[0][0], x[i])
        z = model.encode(x[i : i + 1], ci)[0]
        expected = model.base.log_prob(z, ci)[0] + torch.linalg.slogdet(jac)[1]
        assert abs(float((lp[i] - expected).detach())) < 1e-8
        torch.testing.assert_close(model.decode([z], ci), x[i : i + 1], rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", ["maf", "nsf", "flat-realnvp"])
def test_an_x_context_batch_trains_the_conditional_density(name):
    """p(x | c) with x = 2 c + noise: a few Adam steps on (x, c) batches lower the NLL below the
    best context-free Gaussian's, which a model ignoring c could not beat."""
    torch.manual_seed(0)
    c = torch.randn(512, 1)
    x = torch.cat([2 * c, -c], 1) + 0.1 * torch.randn(512, 2)
    model = create(name, dim=2, context_dim=1, **FLAT[name])
    model.initialize(x[:256], c[:256])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        out = model.loss((x, c))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        nll = -model.log_prob(x, c).mean().item()
    context_free = torch.distributions.MultivariateNormal(x.mean(0), torch.cov(x.T))
    assert nll < -context_free.log_prob(x).mean().item() - 1.0


def test_flow_with_a_spline_coupling_conditioned_on_a_scalar():
    """The example of docs/conditional-flows.md."""
    torch.manual_seed(0)
    layers = [SplineCoupling(alternating_mask(2, invert=i % 2 == 1), lambda n_in, n_out: MLP(n_in, n_out, [16]),
                             bins=4, context_dim=1) for i in range(2)]
    flow = Flow(Chain([layers[0], ReversePermutation(2), layers[1]]), StandardNormal((2,)))
    c = torch.full((5, 1), 0.5)
    assert flow.log_prob(torch.randn(5, 2), c).shape == (5,)
    assert flow.sample(5, context=c).shape == (5, 2)
