"""2-D density figures of the LGF paper (Cornish et al. 2020): figures 1 and 4 show the target
samples beside each model's learned density on a grid; figure 2 shows the learned support moving
from one epoch to the next, which `support_stability` puts into numbers.

Non-finite log-densities (NaN, +inf, -inf) are never hidden: they keep their value on the grid,
are drawn in their own colour and are counted on the panel.

Matplotlib is used through `Figure` + `FigureCanvasAgg`, so importing this module does not pick
or change the pyplot backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from flowforge.errors import ShapeError
from flowforge.viz.atomic_file import save_figure

__all__ = [
    "NON_FINITE_COLOUR",
    "log_density_grid",
    "plot_density",
    "plot_samples",
    "save_density_figure",
    "support_stability",
]

Bounds = tuple[tuple[float, float], tuple[float, float]]
Panel = tuple[str, np.ndarray, np.ndarray, np.ndarray]

DEFAULT_BOUNDS: Bounds = ((-4.0, 4.0), (-4.0, 4.0))  # the LGF figures' window
NON_FINITE_COLOUR = "red"
DENSITY_CMAP = "viridis"
_PANEL_INCHES = 3.0


def _check_bounds(bounds: Bounds) -> Bounds:
    try:
        (x0, x1), (y0, y1) = bounds
        x0, x1, y0, y1 = float(x0), float(x1), float(y0), float(y1)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be ((x_min, x_max), (y_min, y_max)), got {bounds!r}") from None
    if not (np.isfinite([x0, x1, y0, y1]).all() and x0 < x1 and y0 < y1):
        raise ValueError(f"bounds must be finite with min < max on each axis, got {bounds!r}")
    return (x0, x1), (y0, y1)


def log_density_grid(log_prob_fn: Callable[[Tensor], Tensor], bounds: Bounds = DEFAULT_BOUNDS,
                     resolution: int = 200, batch_size: int = 10_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``log_prob_fn`` (float32 (N, 2) tensor -> (N,) log-densities) on a regular grid.

    Returns ``(xs, ys, logp)``: the float32 cell centres ``xs``, ``ys`` (``resolution`` each, end
    points included) and float64 ``logp`` of shape (len(ys), len(xs)) with
    ``logp[i, j] = log p(xs[j], ys[i])`` (row = y, the image convention). Evaluated in batches of
    ``batch_size`` points under ``torch.no_grad``; NaN and infinite values are returned unchanged.
    The points are CPU tensors: a model on another device needs a wrapper that moves them.
    """
    (x0, x1), (y0, y1) = _check_bounds(bounds)
    if int(resolution) < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    xs = np.linspace(x0, x1, int(resolution)).astype(np.float32)
    ys = np.linspace(y0, y1, int(resolution)).astype(np.float32)
    gx, gy = np.meshgrid(xs, ys)  # (len(ys), len(xs)), x varying along rows
    points = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], axis=1))
    values = []
    with torch.no_grad():
        for chunk in points.split(int(batch_size)):
            out = torch.as_tensor(log_prob_fn(chunk))
            if out.shape != (len(chunk),):
                raise ShapeError(f"log_prob_fn must map a ({len(chunk)}, 2) tensor to shape ({len(chunk)},), "
                                 f"got {tuple(out.shape)}")
            values.append(out.detach().to("cpu", torch.float64))
    return xs, ys, torch.cat(values).numpy().reshape(len(ys), len(xs))


def _extent(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float, float]:
    """Image extent with the grid points at the cell centres."""
    dx = (xs[-1] - xs[0]) / (len(xs) - 1) if len(xs) > 1 else 1.0
    dy = (ys[-1] - ys[0]) / (len(ys) - 1) if len(ys) > 1 else 1.0
    return float(xs[0] - dx / 2), float(xs[-1] + dx / 2), float(ys[0] - dy / 2), float(ys[-1] + dy / 2)


def _cmap() -> Colormap:
    return colormaps[DENSITY_CMAP].with_extremes(bad=NON_FINITE_COLOUR)


def _bare(ax: Axes, title: str | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=10)


def plot_density(ax: Axes, xs: np.ndarray, ys: np.ndarray, logp: np.ndarray, title: str | None = None,
                 vmin_quantile: float = 0.01, scale: Literal["density", "log"] = "density") -> int:
    """Draw a log-density grid from `log_density_grid` as a heat map; return the non-finite cell count.

    ``scale="density"`` (the default, the look of the LGF paper's figures 1, 2 and 4) shows the
    density relative to its largest finite value, ``exp(logp - max)``, which is the density up to
    a constant and cannot overflow; ``scale="log"`` shows ``logp`` itself. The colour floor is the
    ``vmin_quantile`` quantile of the finite plotted values (lower values get the lowest colour;
    in log scale this keeps the far tails from squeezing the colour range).
    Cells whose logp is NaN or ±inf are drawn in ``NON_FINITE_COLOUR`` and, when there are any, a
    legend says "non-finite: N cells".
    """
    logp = np.asarray(logp, dtype=np.float64)
    if logp.shape != (len(ys), len(xs)):
        raise ShapeError(f"logp must have shape (len(ys), len(xs)) = ({len(ys)}, {len(xs)}), got {logp.shape}")
    if not 0.0 <= vmin_quantile < 1.0:
        raise ValueError(f"vmin_quantile must be in [0, 1), got {vmin_quantile}")
    if scale not in ("density", "log"):
        raise ValueError(f"scale must be 'density' or 'log', got {scale!r}")
    finite = np.isfinite(logp)
    n_bad = int(finite.size - finite.sum())
    values = np.zeros_like(logp)
    vmin = vmax = None
    if finite.any():
        top = logp[finite].max()
        values[finite] = np.exp(logp[finite] - top) if scale == "density" else logp[finite]
        vmin, vmax = float(np.quantile(values[finite], vmin_quantile)), float(values[finite].max())
        if vmin >= vmax:  # a flat grid: keep a non-empty colour range
            vmin, vmax = (vmin - 1.0, vmax) if scale == "log" else (0.0, max(vmax, 1.0))
    ax.imshow(np.ma.masked_array(values, mask=~finite), origin="lower", extent=_extent(xs, ys), cmap=_cmap(),
              vmin=vmin, vmax=vmax, interpolation="nearest", aspect="equal")
    _bare(ax, title)
    if n_bad:
        ax.legend(handles=[Patch(facecolor=NON_FINITE_COLOUR, label=f"non-finite: {n_bad} cells")],
                  loc="upper right", fontsize=7, framealpha=0.85)
    return n_bad


def plot_samples(ax: Axes, points: np.ndarray | Tensor, title: str | None = None,
                 bounds: Bounds = DEFAULT_BOUNDS) -> None:
    """Scatter (N, 2) points in black on white, as the target samples of the LGF figures."""
    points = _as_points(points)
    (x0, x1), (y0, y1) = _check_bounds(bounds)
    size = 2.0 if len(points) <= 2_000 else 0.5
    ax.scatter(points[:, 0], points[:, 1], s=size, c="black", marker=".", linewidths=0, rasterized=True)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    _bare(ax, title if title is not None else f"data ({len(points)} points)")


def _as_points(points: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(points, Tensor):
        points = points.detach().cpu().numpy()
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ShapeError(f"points must have shape (N, 2), got {points.shape}")
    return points


def save_density_figure(path: str | os.PathLike, data_points: np.ndarray | Tensor, panels: Sequence[Panel],
                        bounds: Bounds = DEFAULT_BOUNDS, dpi: int = 120) -> Path:
    """Write one PNG: the data panel, then one density panel per ``(title, xs, ys, logp)``, side by
    side as in the LGF paper's figures 1 and 4. Parent folders are created; the file is written to
    a temporary name in the same folder and renamed, so readers never see a partial PNG."""
    path = Path(path)
    bounds = _check_bounds(bounds)
    fig = Figure(figsize=(_PANEL_INCHES * (1 + len(panels)), _PANEL_INCHES + 0.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 1 + len(panels), squeeze=False)[0]
    plot_samples(axes[0], data_points, bounds=bounds)
    for ax, (title, xs, ys, logp) in zip(axes[1:], panels):
        plot_density(ax, xs, ys, logp, title=title)
        ax.set_xlim(*bounds[0])
        ax.set_ylim(*bounds[1])
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def support_stability(logp_grids: Sequence[np.ndarray], threshold: float = 0.01) -> dict[str, float]:
    """How much the learned support moves across a sequence of grids, e.g. the last few epochs
    (the LGF paper's figure 2: the MAF's support fluctuates from epoch to epoch, LGF-MAF's does not).

    Each grid (same shape, same window) is binarised: a cell is in the support when its density
    exceeds ``threshold`` times that grid's largest finite density, i.e. ``logp > max + log(threshold)``;
    non-finite cells count as in the support (the model does not exclude them). Returns
    ``mean_change`` and ``max_change``: the mean and largest fraction of grid cells in the symmetric
    difference of consecutive supports; ``ever_changed``: the fraction of cells whose status changes
    at least once over the sequence; ``support_fraction``: the mean fraction of cells in the support.
    All are 0 for identical grids; each is a fraction of the whole grid, in [0, 1].
    """
    if len(logp_grids) < 2:
        raise ValueError(f"support_stability needs at least two grids, got {len(logp_grids)}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    grids = [np.asarray(g, dtype=np.float64) for g in logp_grids]
    if len({g.shape for g in grids}) != 1:
        raise ShapeError(f"all grids must have the same shape, got {sorted({g.shape for g in grids})}")
    supports = []
    for g in grids:
        finite = np.isfinite(g)
        top = g[finite].max() if finite.any() else np.inf
        supports.append(~finite | (g > top + np.log(threshold)))
    changes = np.array([np.mean(a != b) for a, b in zip(supports, supports[1:])])
    ever = np.any(np.stack([a != b for a, b in zip(supports, supports[1:])]), axis=0)
    return {
        "mean_change": float(changes.mean()),
        "max_change": float(changes.max()),
        "ever_changed": float(ever.mean()),
        "support_fraction": float(np.mean([s.mean() for s in supports])),
    }
