"""2-D density grids and figures (LGF paper figures 1, 2 and 4): exact grid values, non-finite
cells counted and drawn, the figure file, and the support-stability measure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from flowforge.errors import ShapeError
from flowforge.viz.density2d import (
    log_density_grid,
    plot_density,
    plot_samples,
    save_density_figure,
    support_stability,
)


def _standard_normal(p: torch.Tensor) -> torch.Tensor:
    return -0.5 * (p**2).sum(1) - math.log(2 * math.pi)


def _broken(p: torch.Tensor) -> torch.Tensor:
    """A standard normal that returns NaN for x > 2 and +inf / -inf in two small boxes."""
    lp = _standard_normal(p)
    lp = torch.where(p[:, 0] > 2.0, torch.full_like(lp, float("nan")), lp)
    lp = torch.where((p[:, 0] < -3.0) & (p[:, 1] > 3.0), torch.full_like(lp, float("inf")), lp)
    return torch.where((p[:, 0] < -3.0) & (p[:, 1] < -3.0), torch.full_like(lp, -float("inf")), lp)


def _axes():
    fig = Figure()
    FigureCanvasAgg(fig)
    return fig.subplots()


def test_log_density_grid_gives_the_analytic_values() -> None:
    calls: list[int] = []

    def logp_fn(p: torch.Tensor) -> torch.Tensor:
        assert p.dtype == torch.float32 and p.shape[1] == 2 and not torch.is_grad_enabled()
        calls.append(len(p))
        return _standard_normal(p)

    xs, ys, logp = log_density_grid(logp_fn, bounds=((-2, 2), (-1, 3)), resolution=21, batch_size=100)
    assert xs.shape == ys.shape == (21,) and logp.shape == (21, 21)
    assert isinstance(logp, np.ndarray) and logp.dtype == np.float64
    assert xs[0] == -2 and xs[-1] == 2 and ys[0] == -1 and ys[-1] == 3
    gx, gy = np.meshgrid(xs.astype(np.float64), ys.astype(np.float64))
    expected = -0.5 * (gx**2 + gy**2) - math.log(2 * math.pi)  # row i is y = ys[i], column j is x = xs[j]
    np.testing.assert_allclose(logp, expected, rtol=0, atol=1e-5)
    assert calls == [100] * 4 + [41]  # 441 points in batches of 100


def test_log_density_grid_keeps_non_finite_values_and_checks_the_output_shape() -> None:
    _, _, logp = log_density_grid(_broken, resolution=40)
    assert np.isnan(logp).any() and np.isposinf(logp).any() and np.isneginf(logp).any()
    with pytest.raises(ShapeError, match=r"\(5, 1\)"):
        log_density_grid(lambda p: p[:, :1], resolution=5, batch_size=5)


def test_non_finite_cells_are_counted_drawn_and_saved(tmp_path) -> None:
    xs, ys, logp = log_density_grid(_broken, resolution=40)
    expected = int((~np.isfinite(logp)).sum())
    assert expected > 0
    ax = _axes()
    assert plot_density(ax, xs, ys, logp, title="broken") == expected
    legend = ax.get_legend()
    assert legend is not None and legend.get_texts()[0].get_text() == f"non-finite: {expected} cells"
    # a clean grid: nothing counted, no legend
    ax = _axes()
    assert plot_density(ax, *log_density_grid(_standard_normal, resolution=40)) == 0
    assert ax.get_legend() is None

    data = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    path = save_density_figure(tmp_path / "deep" / "fig.png", data, [("broken", xs, ys, logp),
                                                                     ("normal", *log_density_grid(_standard_normal))])
    assert path == tmp_path / "deep" / "fig.png" and path.stat().st_size > 1_000
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 2 * img.height  # three panels side by side
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    red = (pixels[:, 0] > 200) & (pixels[:, 1] < 60) & (pixels[:, 2] < 60)
    assert red.sum() > 100  # the non-finite cells are painted
    assert sorted(p.name for p in path.parent.iterdir()) == ["fig.png"]  # no temporary file left


def test_plot_samples_rejects_bad_shapes() -> None:
    with pytest.raises(ShapeError, match=r"\(N, 2\)"):
        plot_samples(_axes(), np.zeros((4, 3)))


def test_support_stability_is_zero_for_identical_grids_and_positive_for_moved_ones() -> None:
    _, _, a = log_density_grid(_standard_normal, resolution=50)
    _, _, b = log_density_grid(lambda p: _standard_normal(p - 1.0), resolution=50)
    same = support_stability([a, a, a], threshold=0.01)
    assert same["mean_change"] == same["max_change"] == same["ever_changed"] == 0.0
    assert 0 < same["support_fraction"] < 1
    moved = support_stability([a, a, b], threshold=0.01)
    assert moved["max_change"] > 0.05 and moved["mean_change"] == pytest.approx(moved["max_change"] / 2)
    assert moved["ever_changed"] == pytest.approx(moved["max_change"])  # one change, so the same cells
    with pytest.raises(ValueError, match="two grids"):
        support_stability([a], threshold=0.01)
    with pytest.raises(ValueError, match="threshold"):
        support_stability([a, b], threshold=0.0)
