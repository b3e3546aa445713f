"""Log-det check, encode/decode drift, out-of-distribution probes, the invertibility attack and
the in-training diagnostics, on small models and maps with known behaviour."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import small_glow
from flowforge.bijections import Bijection
from flowforge.diagnostics import error_summary, invertible_map, reconstruction_errors
from flowforge.diagnostics.attack import attack_radius, invertibility_attack
from flowforge.diagnostics.drift import encode_decode_drift
from flowforge.diagnostics.during_training import COLUMNS, training_diagnostics
from flowforge.diagnostics.logdet_check import logdet_errors
from flowforge.diagnostics.ood import noise_probes, probe_reconstructions
from flowforge.training.metrics import COLUMNS as METRIC_COLUMNS


class _Scale(Bijection):
    """y = 2x with a log-det that is off by `bias` (to see the check catch it)."""

    def __init__(self, bias: float = 0.0):
        super().__init__()
        self.bias = bias

    def forward(self, x, context=None):
        return 2 * x, torch.full((x.shape[0],), x[0].numel() * math.log(2) + self.bias, dtype=x.dtype)

    def inverse(self, z, context=None):
        return z / 2, torch.full((z.shape[0],), -z[0].numel() * math.log(2) - self.bias, dtype=z.dtype)


def test_logdet_check_is_exact_on_glow_and_catches_a_wrong_logdet():
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(3)) - 0.5
    glow = logdet_errors(small_glow(), x)
    assert glow["abs_error"].max() < 1e-8
    assert glow["analytic"].abs().min() > 1e-3  # the perturbed model is not volume preserving
    wrong = logdet_errors(_Scale(bias=0.25), torch.randn(2, 3))
    assert torch.allclose(wrong["numerical"], torch.full((2,), 3 * math.log(2), dtype=torch.float64))
    assert torch.allclose(wrong["abs_error"], torch.full((2,), 0.25, dtype=torch.float64))


def test_drift_grows_by_the_per_pass_error_and_counts_non_finite():
    shift = 1e-3

    def forward(x):
        return x.flatten(1)

    def inverse(z):
        return (z + shift).reshape(-1, 1, 2, 2)

    x = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    x[2, 0, 0, 0] = float("inf")
    rows = encode_decode_drift(forward, inverse, x, passes=4)
    assert [r["pass"] for r in rows] == [1, 2, 3, 4]
    for k, r in enumerate(rows, start=1):
        assert r["pad"] == pytest.approx(255 * k * shift) and r["mse"] == pytest.approx((k * shift) ** 2)
        assert r["non_finite"] == 1


def test_noise_probes_have_the_documented_ranges():
    probes = noise_probes(8, (1, 4, 4), n_bits=5, generator=torch.Generator().manual_seed(0))
    assert set(probes) == {"gaussian", "rademacher", "constant"}
    assert all(p.shape == (8, 1, 4, 4) for p in probes.values())
    assert set(probes["rademacher"].unique().tolist()) == {-0.5, 0.5}
    const = probes["constant"].flatten(1)
    assert (const == const[:, :1]).all() and const.min() == -0.5 and const.max() == 0.5 - 2**-5
    assert probes["gaussian"].abs().max() > 1.0  # unclipped: outside the data range


def test_probe_reconstructions_summarise_each_probe():
    probes = noise_probes(8, (1, 4, 4), n_bits=5, generator=torch.Generator().manual_seed(0))
    additive = probe_reconstructions(*invertible_map(small_glow("additive")), probes)
    for name, s in additive.items():
        assert s["examples"] == 8 and s["non_finite"] == 0 and s["max"] < 1e-4, name
    forward, inverse = invertible_map(small_glow("affine"))
    affine = probe_reconstructions(forward, inverse, probes, batch_size=3)
    for name, x in probes.items():
        assert affine[name] == error_summary(reconstruction_errors(forward, inverse, x)), name


def test_attack_stays_in_the_cell_raises_the_error_and_freezes_broken_examples():
    eps = attack_radius(5)
    assert eps == 0.5 / 32

    def forward(x):
        return x.flatten(1)

    def inverse(z):
        # error 0.1 * z^2 grows away from 0; beyond z = 0.012 the inverse "explodes"
        out = z + 0.1 * z**2
        return torch.where(z > 0.012, torch.full_like(z, float("inf")), out).reshape(-1, 1, 1, 1)

    x_nat = torch.full((16, 1, 1, 1), 0.005)
    result = invertibility_attack(forward, inverse, x_nat, eps, steps=60, step_size=5e-4,
                                  generator=torch.Generator().manual_seed(0))
    assert result.errors.shape == (61, 16)
    moved = (result.x_attacked - x_nat).abs()
    assert (moved <= eps + 1e-7).all()
    broken = ~torch.isfinite(result.final)
    assert broken.any() and (~broken).any()
    final_x = result.x_attacked.flatten()
    assert (final_x[broken] > 0.012).all()
    # an example broken by the ascent (not by its random start) was frozen one step past 0.012
    by_ascent = broken & torch.isfinite(result.errors[0])
    assert by_ascent.any() and (final_x[by_ascent] <= 0.012 + 5e-4 + 1e-7).all()
    # the others were pushed to the negative end of the cell, where 0.1 z^2 is largest there
    assert torch.allclose(result.x_attacked[~broken].flatten(), torch.tensor(0.005 - eps))
    assert (result.final[~broken] > result.errors[0][~broken]).all()
    assert torch.isinf(result.worst[broken]).all()


def test_training_diagnostics_columns_are_metrics_columns_and_mode_is_restored():
    assert set(COLUMNS) <= set(METRIC_COLUMNS)
    model = small_glow("additive").train()
    values = training_diagnostics(model, torch.rand(6, 1, 4, 4) - 0.5, condition_examples=2, iters=5)
    assert set(values) == set(COLUMNS) and model.training
    assert values["recon_non_finite"] == 0 and values["recon_max"] < 1e-4 and values["condition_max"] >= 1.0


def test_figures_accept_non_finite_values_and_count_them(tmp_path):
    from flowforge.viz.stability_plots import save_attack_curves, save_error_histogram, save_spectrum

    broken = torch.tensor([float("inf"), float("nan")], dtype=torch.float64)
    errors = {"data": torch.tensor([1e-6, 2e-6, 0.0], dtype=torch.float64), "noise": broken}
    assert save_error_histogram(tmp_path / "h.png", errors).stat().st_size > 1000
    spectrum = torch.tensor([[3.0, 2.0, 1.0], [float("nan")] * 3], dtype=torch.float64)
    assert save_spectrum(tmp_path / "s.png", {"F": spectrum}).stat().st_size > 1000
    curve = torch.rand(4, 2, dtype=torch.float64)
    curve[2:] = float("nan")  # every example broken from step 2: gaps, no warning
    assert save_attack_curves(tmp_path / "c.png", {"m": curve}).stat().st_size > 1000
