"""Rational-quadratic spline layers (Durkan et al. 2019): the contract checks of
tests/bijection_checks.py for the elementwise spline, the spline coupling (flat, with and without
context, and on images), the autoregressive spline step and a conditional coupling-permutation-
autoregressive chain; then the spline itself: exact inverse in float32 at every knot, at +-B and
in the identity tails, monotonicity, the log-derivative against autograd in float64, C1
continuity at the knots, the identity at zero parameters, and the structure of the coupling and
autoregressive Jacobians.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from bijection_checks import CHECKS, LayerCase, build, inputs
from flowforge.bijections import (
    Chain,
    RationalQuadraticSpline,
    ReversePermutation,
    SplineAutoregressive,
    SplineCoupling,
)
from flowforge.bijections.masked_coupling import alternating_mask
from flowforge.bijections.rational_quadratic import (
    params_per_dim,
    rational_quadratic_spline,
    rational_quadratic_spline_params_first,
    spline_knots,
)
from flowforge.bijections.spline_coupling import half_mask
from flowforge.errors import ShapeError
from flowforge.nets.mlp import MLP

F64 = torch.float64
BOUND = 3.0


def _mlp(n_in: int, n_out: int) -> nn.Module:
    return MLP(n_in, n_out, [16])


def _conv(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(n_in, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, n_out, 1))


# float32 tolerance of the conditioned layers: where a spline is flat (slope down to the minimum
# derivative), one ulp of the output is many ulps of the input, and the 1e-5 of
# tests/test_bijection_contract.py is reached by some seeds of these random conditioners
ATOL = 5e-5


def _chain() -> Chain:
    """A small conditional NSF-style stack: coupling, permutation, autoregressive step."""
    return Chain([SplineCoupling(alternating_mask(4), _mlp, bins=5, context_dim=2), ReversePermutation(4),
                  SplineAutoregressive(4, [12], bins=5, context_dim=2)])


CASES = [
    LayerCase("rqs-elementwise", lambda: RationalQuadraticSpline(5, bins=6), (5,), passes_context=True, noise=0.5),
    LayerCase("coupling-alternating", lambda: SplineCoupling(alternating_mask(5), _mlp, bins=6), (5,)),
    LayerCase("coupling-half-context", lambda: SplineCoupling(half_mask(5), _mlp, context_dim=3), (5,), context_dim=3),
    LayerCase("coupling-module-net",
              lambda: SplineCoupling(half_mask(4, invert=True), MLP(2, 2 * params_per_dim(4), [8]), bins=4), (4,)),
    LayerCase("coupling-image", lambda: SplineCoupling(half_mask(2), _conv, bins=4), (2, 3, 3)),
    LayerCase("coupling-image-context",
              lambda: SplineCoupling(half_mask(3), _conv, bins=4, context_dim=2), (3, 2, 2), context_dim=2),
    LayerCase("coupling-identity-spline",
              lambda: SplineCoupling(alternating_mask(5), _mlp, bins=6, identity_spline=True), (5,)),
    LayerCase("coupling-identity-spline-context",
              lambda: SplineCoupling(half_mask(4), _mlp, context_dim=2, identity_spline=True), (4,), context_dim=2),
    LayerCase("coupling-identity-spline-image",
              lambda: SplineCoupling(half_mask(3), _conv, bins=4, identity_spline=True), (3, 2, 2)),
    LayerCase("autoregressive", lambda: SplineAutoregressive(5, [16, 16], bins=6), (5,)),
    LayerCase("autoregressive-reverse-context",
              lambda: SplineAutoregressive(4, [12], reverse_order=True, context_dim=3), (4,), context_dim=3),
    LayerCase("autoregressive-1d", lambda: SplineAutoregressive(1, [8], bins=5), (1,)),
    LayerCase("chain-context", _chain, (4,), context_dim=2),
]
CASES = [case if case.id == "rqs-elementwise" else replace(case, atol=ATOL) for case in CASES]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract(case, check):
    CHECKS[check](case)


# --------------------------------------------------------------------------- the spline itself


def _random_spline(n: int, bins: int, dtype: torch.dtype = torch.float32, seed: int = 0, scale: float = 2.0):
    """Raw (widths, heights, derivatives) of n independent splines, spread widely."""
    gen = torch.Generator().manual_seed(seed)
    raw = scale * torch.randn(n, params_per_dim(bins), generator=gen, dtype=dtype)
    return raw[:, :bins], raw[:, bins:2 * bins], raw[:, 2 * bins:]


def _expand(params, points: int):
    return [p[:, None, :].expand(p.shape[0], points, p.shape[1]) for p in params]


def _spline(values, params, inverse=False):
    return rational_quadratic_spline(values, *_expand(params, values.shape[1]), inverse=inverse, bound=BOUND)


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["float32", "float64"])
def test_inverse_exact_at_knots_bounds_and_tails(dtype):
    """Round trips from every knot (x knots forward, y knots inverse), +-B, just inside and outside
    +-B and the tails: within 1e-5 in float32. The log-dets of a round trip cancel to 1e-8 in
    float64; in float32 only finiteness is asked of them, since near the end of a steep bin the
    log-derivative moves by ~1e3 per unit of y and one float32 ulp of y shifts it by ~1e-4."""
    bins = 8
    params = _random_spline(32, bins, dtype=dtype)
    knots_x, knots_y, _ = spline_knots(*params, bound=BOUND)
    eps = 1e-6
    extra = torch.tensor([-BOUND, BOUND, -BOUND - eps, BOUND + eps, -BOUND + eps, BOUND - eps, -3.5, 3.5, -50.0, 50.0],
                         dtype=dtype)
    for knots, inverse in ((knots_x, False), (knots_y, True)):
        points = torch.cat([knots, extra.expand(knots.shape[0], -1)], dim=1)
        out, logdet = _spline(points, params, inverse=inverse)
        back, logdet_back = _spline(out, params, inverse=not inverse)
        assert torch.isfinite(out).all() and torch.isfinite(logdet).all() and torch.isfinite(logdet_back).all()
        assert (back - points).abs().max().item() < (1e-5 if dtype == torch.float32 else 1e-12)
        if dtype == F64:
            assert (logdet + logdet_back).abs().max().item() < 1e-8
    # the x knots land on the y knots, +-B on +-B
    out, _ = _spline(knots_x, params)
    assert (out - knots_y).abs().max().item() < 1e-5
    torch.testing.assert_close(out[:, [0, -1]], torch.tensor([-BOUND, BOUND], dtype=dtype).expand(32, 2),
                               rtol=0, atol=1e-6)


def test_tails_are_the_identity():
    params = _random_spline(16, 6)
    tails = torch.tensor([-100.0, -3.5, -BOUND - 1e-5, BOUND + 1e-5, 3.5, 100.0]).expand(16, -1)
    for inverse in (False, True):
        out, logdet = _spline(tails, params, inverse=inverse)
        assert torch.equal(out, tails)
        assert torch.equal(logdet, torch.zeros_like(logdet))


def test_monotonic():
    params = _random_spline(8, 10, dtype=F64, scale=3.0)
    grid = torch.linspace(-BOUND - 1, BOUND + 1, 4001, dtype=F64).expand(8, -1)
    for inverse in (False, True):
        out, _ = _spline(grid, params, inverse=inverse)
        assert (out.diff(dim=1) > 0).all()


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
def test_log_derivative_matches_autograd_float64(inverse):
    params = _random_spline(8, 7, dtype=F64, scale=2.0)
    knots_x, knots_y, _ = spline_knots(*params, bound=BOUND)
    gen = torch.Generator().manual_seed(3)
    random = (BOUND + 1) * (2 * torch.rand(8, 50, generator=gen, dtype=F64) - 1)
    points = torch.cat([random, knots_y if inverse else knots_x], dim=1).requires_grad_(True)
    out, logdet = _spline(points, params, inverse=inverse)
    (grad,) = torch.autograd.grad(out.sum(), points)
    torch.testing.assert_close(logdet, grad.log(), rtol=0, atol=1e-10)


def test_derivative_is_continuous_at_knots():
    """The slope at knot k is d_k from both sides (eq. 5 at xi = 0 and xi = 1); 1 at +-B,
    matching the identity tails."""
    params = _random_spline(8, 6, dtype=F64)
    knots_x, _, derivatives = spline_knots(*params, bound=BOUND)
    for side in (-1e-13, 0.0, 1e-13):
        _, logdet = _spline(knots_x + side, params)
        torch.testing.assert_close(logdet, derivatives.log(), rtol=0, atol=1e-6)
    torch.testing.assert_close(derivatives[:, [0, -1]], torch.ones(8, 2, dtype=F64), rtol=0, atol=0)


def test_zero_parameters_give_the_identity():
    x = torch.linspace(-5, 5, 101, dtype=F64)[None, :]
    zeros = [torch.zeros(1, 8, dtype=F64), torch.zeros(1, 8, dtype=F64), torch.zeros(1, 7, dtype=F64)]
    for inverse in (False, True):
        out, logdet = _spline(x, zeros, inverse=inverse)
        torch.testing.assert_close(out, x, rtol=0, atol=1e-12)
        torch.testing.assert_close(logdet, torch.zeros_like(logdet), rtol=0, atol=1e-12)
    layer = SplineCoupling(half_mask(4), _mlp)  # zero-initialised MLP output: the identity
    x = torch.randn(3, 4)
    torch.testing.assert_close(layer(x)[0], x, rtol=0, atol=1e-6)


def test_spline_rejects_bad_parameter_shapes():
    x = torch.zeros(2, 3)
    with pytest.raises(ShapeError, match="widths and heights"):
        rational_quadratic_spline(x, torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ShapeError, match=r"\(2, 3\)"):
        rational_quadratic_spline(x, torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="too large"):
        rational_quadratic_spline(x, torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.zeros(2, 3, 3),
                                  min_bin_width=0.3)


def test_params_first_layout_is_the_same_spline():
    """The layers' entry point (raw numbers first, (3K - 1,) + S) against the (..., K) one, on a
    batch with two spline dimensions, both directions; a raw tensor of the wrong shape is refused."""
    gen = torch.Generator().manual_seed(5)
    bins, shape = 6, (4, 3, 5)
    raw = 2 * torch.randn(params_per_dim(bins), *shape, generator=gen, dtype=F64)
    values = (BOUND + 1) * (2 * torch.rand(*shape, generator=gen, dtype=F64) - 1)
    last = raw.movedim(0, -1)
    for inverse in (False, True):
        out, logdet = rational_quadratic_spline_params_first(values, raw, inverse, BOUND)
        out_ref, logdet_ref = rational_quadratic_spline(values, last[..., :bins], last[..., bins:2 * bins],
                                                        last[..., 2 * bins:], inverse, BOUND)
        torch.testing.assert_close(out, out_ref, rtol=0, atol=0)
        torch.testing.assert_close(logdet, logdet_ref, rtol=0, atol=0)
    with pytest.raises(ShapeError, match=r"\(3K - 1,\) \+ \(4, 3, 5\)"):
        rational_quadratic_spline_params_first(values, raw[:-1], False, BOUND)
    with pytest.raises(ShapeError, match=r"\(3K - 1,\) \+ \(4, 3, 5\)"):
        rational_quadratic_spline_params_first(values, raw[:, :2], False, BOUND)


# --------------------------------------------------------------------------- layer structure


def test_coupling_passes_identity_part_and_is_elementwise_in_the_rest():
    case = CASES[1]  # alternating mask on 5 features: 0, 2, 4 identity
    layer = build(case).double()
    x, _ = inputs(case, 1, seed=11, dtype=F64)
    jac = jacobian(lambda u: layer(u.view(1, 5))[0].flatten(), x.flatten())
    identity, transformed = [0, 2, 4], [1, 3]
    torch.testing.assert_close(jac[identity][:, identity], torch.eye(3, dtype=F64), rtol=0, atol=0)
    assert torch.count_nonzero(jac[identity][:, transformed]) == 0
    block = jac[transformed][:, transformed]
    assert torch.count_nonzero(block - torch.diag(torch.diagonal(block))) == 0
    assert torch.count_nonzero(jac[transformed][:, identity]) > 0


@pytest.mark.parametrize("reverse", [False, True], ids=["forward-order", "reverse-order"])
def test_autoregressive_jacobian_is_triangular(reverse):
    torch.manual_seed(0)
    layer = SplineAutoregressive(4, [16], bins=5, reverse_order=reverse)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.5 * torch.randn_like(p))
    layer = layer.double()
    x = torch.randn(1, 4, dtype=F64)
    jac = jacobian(lambda u: layer(u.view(1, 4))[0].flatten(), x.flatten())
    if reverse:
        jac = jac.flip(0, 1)
    assert torch.count_nonzero(torch.triu(jac, 1)) == 0
    assert torch.count_nonzero(torch.tril(jac, -1)) == 6


def test_coupling_checks_its_configuration():
    with pytest.raises(ValueError, match="both identity"):
        SplineCoupling(torch.ones(4), _mlp)
    layer = SplineCoupling(half_mask(4), MLP(2, 5, [4]), bins=4)  # needs 2 * 11 outputs
    with pytest.raises(ShapeError, match=r"\(3, 22\)"):
        layer(torch.zeros(3, 4))
    conditional = SplineCoupling(half_mask(4), _mlp, context_dim=2)
    with pytest.raises(ShapeError, match=r"\(3, 2\)"):
        conditional(torch.zeros(3, 4), context=torch.zeros(3, 5))


def test_nsf_with_elementwise_splines_transforms_the_conditioning_half_too():
    """`nsf` with elementwise=True (the coupling's identity_spline): with one coupling the identity
    half is no longer copied (its Jacobian block is diagonal, not the unit matrix) and the rest
    still depends on it; log-det against autograd in float64, inverse exact."""
    from flowforge.models import create

    torch.manual_seed(0)
    flow = create("nsf", dim=4, layers=1, hidden=[8], bins=4, elementwise=True).double()
    assert all(layer.identity_spline is not None for layer in flow.transform.layers
               if isinstance(layer, SplineCoupling))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(3, 4, dtype=torch.float64)
    z, logdet = flow.transform(x)
    jac = torch.autograd.functional.jacobian(lambda v: flow.transform(v[None])[0][0], x[0])
    identity = jac[:2, :2]
    assert torch.count_nonzero(identity - torch.diag(torch.diagonal(identity))) == 0
    assert not torch.allclose(torch.diagonal(identity), torch.ones(2, dtype=torch.float64))
    assert torch.count_nonzero(jac[:2, 2:]) == 0 and torch.count_nonzero(jac[2:, :2]) > 0
    assert abs(torch.linalg.slogdet(jac)[1].item() - logdet[0].item()) < 1e-10
    back, _ = flow.transform.inverse(z)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-10)


def test_nsf_couplings_transform_every_feature():
    """Between couplings a reversal: with the same mask in every coupling each feature is
    transformed in turn (an alternating mask would cancel the reversal and leave half the
    features untouched: the output would copy them, a unit row in the Jacobian)."""
    from flowforge.models import create

    torch.manual_seed(0)
    for dim in (2, 3, 4):
        flow = create("nsf", dim=dim, layers=2, hidden=[8], bins=4).double()
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.3 * torch.randn_like(p))
        x = torch.randn(dim, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda v: flow.transform(v[None])[0][0], x)
        copied = [(row.abs() > 1e-12).sum() == 1 and torch.isclose(row.abs().max(), torch.tensor(1.0, dtype=row.dtype))
                  for row in jac]
        assert not any(copied), f"dim {dim}: outputs copying an input unchanged:\n{jac}"
