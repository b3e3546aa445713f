"""The diagnostics primitives: the flat invertible map of a model, reconstruction errors and
their summary (non-finite ones counted), exact Jacobian singular values, and power-iteration
extremes against the exact ones."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from conftest import perturb, small_glow
from flowforge.bijections import Bijection, Chain, ReversePermutation, Squeeze
from flowforge.diagnostics import (
    error_summary,
    invertible_map,
    jacobian_singular_values,
    reconstruction_errors,
    singular_value_extremes,
)
from flowforge.errors import ShapeError
from flowforge.models import create


def _small_glow(coupling: str = "affine") -> torch.nn.Module:
    return small_glow(coupling).double()


def _small_maf() -> torch.nn.Module:
    model = create("maf", dim=6, layers=3, hidden=(16,), batch_norm=False)
    perturb(model, seed=3)
    return model.double().eval()


class _Linear(Bijection):
    """y = x A^T on flat inputs: a map whose Jacobian is the explicit matrix A."""

    def __init__(self, a: Tensor):
        super().__init__()
        self.a = a

    def forward(self, x, context=None):
        return x @ self.a.T, torch.linalg.slogdet(self.a)[1].expand(x.shape[0])

    def inverse(self, z, context=None):
        return torch.linalg.solve(self.a, z.T).T, -torch.linalg.slogdet(self.a)[1].expand(z.shape[0])


class _Sigmoid(Bijection):
    """y = sigmoid(x), inverse logit(y): in float32 sigmoid saturates to exactly 0 or 1 for
    |x| beyond ~17 (resp. ~100), and the inverse returns +-inf there, a known bad inverse."""

    def forward(self, x, context=None):
        y = torch.sigmoid(x)
        return y, (torch.log(y) + torch.log1p(-y)).flatten(1).sum(1)

    def inverse(self, z, context=None):
        x = torch.log(z) - torch.log1p(-z)
        return x, -(torch.log(z) + torch.log1p(-z)).flatten(1).sum(1)


# --------------------------------------------------------------------------- maps


def test_glow_map_is_flat_concatenation_of_all_latents_and_inverts():
    model = _small_glow()
    forward, inverse = invertible_map(model)
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64) - 0.5
    z = forward(x)
    latents = model.encode(x)
    assert len(latents) == 2
    assert z.shape == (5, 16)
    assert torch.equal(z, torch.cat([l.flatten(1) for l in latents], dim=1))
    assert torch.allclose(inverse(z), x, atol=1e-10)


def test_inverse_before_forward_probes_latent_shapes():
    model = _small_glow()
    forward, inverse = invertible_map(model)
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64) - 0.5
    z = invertible_map(model)[0](x)  # a different map object: this one has never run forward
    assert torch.allclose(inverse(z), x, atol=1e-10)
    with pytest.raises(ShapeError, match=r"\(B, 16\)"):
        inverse(z[:, :5])


def test_flat_model_map_uses_its_flow():
    model = _small_maf()
    forward, inverse = invertible_map(model)
    x = torch.randn(4, 6, dtype=torch.float64)
    assert torch.equal(forward(x), model.transform(x)[0])
    assert torch.allclose(inverse(forward(x)), x, atol=1e-10)


def test_bare_bijection_is_flattened_and_needs_a_shape_for_a_cold_inverse():
    bij = Chain([Squeeze(), ReversePermutation(4)])
    forward, inverse = invertible_map(bij)
    with pytest.raises(ShapeError, match="input_shape"):
        inverse(torch.zeros(2, 16))
    x = torch.randn(2, 1, 4, 4)
    z = forward(x)
    assert z.shape == (2, 16)
    assert torch.equal(inverse(z), x)
    _, cold_inverse = invertible_map(bij, input_shape=(1, 4, 4))
    assert torch.equal(cold_inverse(z), x)


def test_invertible_map_rejects_other_modules():
    with pytest.raises(TypeError, match="Linear"):
        invertible_map(torch.nn.Linear(2, 2))


# --------------------------------------------------------------------------- reconstruction


def test_reconstruction_errors_count_non_finite_of_a_known_bad_inverse():
    forward, inverse = invertible_map(_Sigmoid())
    x = torch.tensor([[0.0, 1.0], [30.0, 0.0], [-0.5, 2.0], [0.0, -200.0], [float("nan"), 0.0]])
    errors = reconstruction_errors(forward, inverse, x, batch_size=2)  # chunks must not lose any
    assert errors.shape == (5,)
    assert torch.isfinite(errors[[0, 2]]).all() and (errors[[0, 2]] < 1e-5).all()
    assert torch.isinf(errors[1]) and torch.isinf(errors[3]) and torch.isnan(errors[4])
    summary = error_summary(errors)
    assert summary["examples"] == 5
    assert summary["non_finite"] == 3 and summary["inf"] == 2 and summary["nan"] == 1
    assert summary["share_non_finite"] == pytest.approx(3 / 5)
    assert summary["max"] == pytest.approx(float(errors[[0, 2]].max()))
    assert summary["mean"] == pytest.approx(float(errors[[0, 2]].mean()))


def test_error_summary_without_finite_errors_has_no_mean():
    summary = error_summary(torch.tensor([float("inf"), float("nan")]))
    assert summary["mean"] is None and summary["max"] is None and summary["share_non_finite"] == 1.0


def test_reconstruction_error_is_the_euclidean_norm_per_example():
    shift = 1e-3

    def forward(x):
        return x.flatten(1)

    def inverse(z):
        return (z + shift).reshape(-1, 1, 2, 2)

    errors = reconstruction_errors(forward, inverse, torch.zeros(3, 1, 2, 2))
    assert torch.allclose(errors, torch.full((3,), 2 * shift, dtype=torch.float64), rtol=1e-6)


# --------------------------------------------------------------------------- Jacobian spectra


def test_singular_values_of_a_linear_map_match_svdvals_of_its_matrix():
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    forward, _ = invertible_map(_Linear(a))
    x = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    s = jacobian_singular_values(forward, x)
    expected = torch.linalg.svdvals(a)
    assert s.shape == (3, 5)
    for row in s:
        assert torch.allclose(row, expected, rtol=1e-12, atol=1e-12)


def test_exact_extremes_of_a_linear_map_and_its_inverse():
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    forward, inverse = invertible_map(_Linear(a))
    x = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    s = torch.linalg.svdvals(a)
    fwd = singular_value_extremes(forward, inverse, x)
    inv = singular_value_extremes(inverse, forward, forward(x))
    assert torch.allclose(fwd["sigma_max"], s[0].expand(2)) and torch.allclose(fwd["sigma_min"], s[-1].expand(2))
    assert torch.allclose(fwd["condition"], (s[0] / s[-1]).expand(2))
    assert torch.allclose(inv["sigma_max"], (1 / s[-1]).expand(2)) and torch.allclose(inv["sigma_min"], (1 / s[0]).expand(2))


@pytest.mark.parametrize("make", [_small_glow, _small_maf], ids=["glow", "maf"])
def test_power_iteration_extremes_match_exact_svd(make):
    model = make()
    forward, inverse = invertible_map(model)
    shape = (1, 4, 4) if hasattr(model, "image_shape") else (6,)
    x = 0.3 * torch.randn(3, *shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    exact = singular_value_extremes(forward, inverse, x, exact=True)
    est = singular_value_extremes(forward, inverse, x, exact=False, iters=300, generator=torch.Generator().manual_seed(7))
    s = jacobian_singular_values(forward, x)
    assert (s[:, 0] / s[:, -1] > 1.5).all()  # a non-trivial spectrum, or the comparison says nothing
    for key in ("sigma_max", "sigma_min", "condition"):
        assert torch.allclose(est[key], exact[key], rtol=1e-4), key
