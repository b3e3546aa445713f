"""Figure of the Flow-GAN comparison (Behrmann et al. 2021, supplement H, figure 19 and section
3.3's stability at the data): samples of each variant's selected checkpoint (T = 1) on the top row,
and on the bottom row the validation curves logged during training — maximum reconstruction
error, median condition number of J_F and bits/dim against the step. Non-finite values are
drawn as crosses at the top edge of their panel and counted in the legend, never dropped;
non-finite samples are red crossed cells (viz/nonfinite.py)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flowforge.viz.atomic_file import save_figure
from flowforge.viz.grid import make_grid
from flowforge.viz.nonfinite import show

CURVES = (("recon_max", "max reconstruction error (valid)", True),
          ("condition", "median condition number of J_F (valid)", True),
          ("valid_bpd", "validation bits/dim", True))


def read_curves(path: Path) -> dict[str, np.ndarray]:
    """Columns of a flow-gan-metrics.csv as float arrays (empty cells and 'inf' / 'nan' kept as
    inf / NaN)."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else math.nan for r in rows])
            for k in (rows[0].keys() if rows else ())}


def _grid(x: torch.Tensor | None, n_bits: int) -> tuple[np.ndarray | None, int]:
    if x is None:
        return None, 0
    images, bad = show(x, n_bits)
    grid = make_grid(images, nrow=int(math.ceil(math.sqrt(len(x)))), padding=1, pad_value=255)
    return (grid[0] if grid.shape[0] == 1 else grid.permute(1, 2, 0)).numpy(), bad


def flow_gan_figure(path: str | Path, runs: dict[str, Path], samples: dict[str, torch.Tensor | None],
                    n_bits: int = 8) -> Path:
    """One column per run (name -> run directory holding flow-gan-metrics.csv): its model-space
    `samples[name]` above (None: no checkpoint to sample from), and the three curves below with every
    run in each curve panel."""
    k = len(runs)
    fig = Figure(figsize=(3.2 * max(k, 3), 6.6))
    FigureCanvasAgg(fig)
    for i, name in enumerate(runs):
        ax = fig.add_subplot(2, max(k, 3), i + 1)
        x = samples.get(name)
        grid, bad = _grid(x, n_bits)
        if grid is not None:
            ax.imshow(grid, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{name}" + (f" ({bad}/{len(x)} non-finite)" if bad else "" if x is not None
                                  else " (no checkpoint)"), fontsize=9)
        ax.axis("off")
    for j, (column, label, log) in enumerate(CURVES):
        ax = fig.add_subplot(2, 3, 4 + j)
        for i, (name, run) in enumerate(runs.items()):
            file = Path(run) / "flow-gan-metrics.csv"
            if not file.is_file():
                continue
            c = read_curves(file)
            if column not in c:
                continue
            steps, values = c["step"], c[column]
            ok = np.isfinite(values)
            bad_col = {"recon_max": "recon_non_finite", "condition": "condition_non_finite",
                       "valid_bpd": "valid_bpd_non_finite"}[column]
            flagged = c.get(bad_col, np.zeros_like(values)) > 0
            ax.plot(steps[ok], values[ok], color=f"C{i}", marker=".", label=f"{name}" + (
                f" ({int((~ok | flagged).sum())} evals non-finite)" if (~ok | flagged).any() else ""))
            top = ax.get_ylim()[1] if ok.any() else 1.0
            if (~ok | flagged).any():
                ax.plot(steps[~ok | flagged], np.full(int((~ok | flagged).sum()), top), "x", color=f"C{i}")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, 120)
