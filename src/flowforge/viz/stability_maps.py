"""Figures of the 2-D stability study (Behrmann et al. 2021, figures 2 and 8): per model, its
learned density, the reconstruction error ||x - F^-1(F(x))|| and the condition number of J_F on
a grid, side by side. Non-finite values (NaN, inf) are drawn in `NON_FINITE_COLOUR` and counted
on the panel, never hidden.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from flowforge.errors import ShapeError
from flowforge.viz.atomic_file import save_figure
from flowforge.viz.density2d import NON_FINITE_COLOUR, _extent, plot_density

__all__ = ["plot_log10_map", "save_stability_figure"]

MAP_CMAP = "magma"


def plot_log10_map(ax: Axes, xs: np.ndarray, ys: np.ndarray, values: np.ndarray, title: str,
                   vmin: float | None = None, vmax: float | None = None) -> int:
    """Heat map of log10(values) (zeros are clipped to the smallest positive value); non-finite
    cells in `NON_FINITE_COLOUR` with their count. Returns the number of non-finite cells."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(ys), len(xs)):
        raise ShapeError(f"values must have shape ({len(ys)}, {len(xs)}), got {values.shape}")
    finite = np.isfinite(values)
    n_bad = int(finite.size - finite.sum())
    shown = np.zeros_like(values)
    if finite.any():
        positive = values[finite & (values > 0)]
        floor = positive.min() if positive.size else 1e-300
        shown[finite] = np.log10(np.maximum(values[finite], floor))
    image = ax.imshow(np.ma.masked_array(shown, mask=~finite), origin="lower", extent=_extent(xs, ys),
                      cmap=colormaps[MAP_CMAP].with_extremes(bad=NON_FINITE_COLOUR), vmin=vmin, vmax=vmax,
                      interpolation="nearest", aspect="equal")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    if n_bad:
        ax.legend(handles=[Patch(facecolor=NON_FINITE_COLOUR, label=f"non-finite: {n_bad} cells")],
                  loc="upper right", fontsize=7, framealpha=0.85)
    return n_bad


def save_stability_figure(path: str | os.PathLike, xs: np.ndarray, ys: np.ndarray,
                          rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], dpi: int = 90) -> Path:
    """One row per model `(label, logp, reconstruction_error, condition)`: density (non-finite
    marked), log10 reconstruction error and log10 condition number, each colour scale shared
    down its column so the models compare directly."""
    def span(arrays: list[np.ndarray]) -> tuple[float | None, float | None]:
        logs = [np.log10(a[np.isfinite(a) & (a > 0)]) for a in arrays]
        logs = [v for v in logs if v.size]
        return (min(v.min() for v in logs), max(v.max() for v in logs)) if logs else (None, None)

    err_range = span([r[2] for r in rows])
    cond_range = span([r[3] for r in rows])
    fig = Figure(figsize=(10.5, 3.1 * len(rows)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for (label, logp, err, cond), (a_density, a_err, a_cond) in zip(rows, axes):
        plot_density(a_density, xs, ys, logp, title=f"{label}: density")
        plot_log10_map(a_err, xs, ys, err, f"{label}: log10 ||x - F^-1(F(x))||", *err_range)
        plot_log10_map(a_cond, xs, ys, cond, f"{label}: log10 cond(J_F)", *cond_range)
    fig.tight_layout()
    return save_figure(fig, path, dpi)
