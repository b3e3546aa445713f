"""Training-dynamics figure of INN classifiers (Behrmann et al. 2021, supplement G, figures 14 and
15): condition number, sigma_min, sigma_max of J_F and accuracy against the training step, one row
for the normalising-flow regulariser's coefficients and one for finite differences', each with
the unregularised run. Non-finite condition estimates are marked with a cross at the panel's top
and counted in the legend."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flowforge.viz.atomic_file import save_figure

PANELS = (("condition_median", "median condition number", True), ("sigma_min", "min σ_min(J_F)", True),
          ("sigma_max", "max σ_max(J_F)", True), ("dynamics_accuracy", "validation accuracy", False))


def read_dynamics(run_dir: Path) -> dict[str, np.ndarray]:
    """The "diagnose" rows of RUN_DIR/metrics.csv as float columns ('' -> NaN)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return {}
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r["event"] == "diagnose"]
    keys = ("step", "condition_non_finite") + tuple(p[0] for p in PANELS)
    return {k: np.array([float(r[k]) if r.get(k) not in ("", None) else math.nan for r in rows]) for k in keys}


def inn_dynamics_figure(path: str | Path, runs: dict[str, Path], title: str = "") -> Path:
    """Runs named "...-none", "...-nf-C", "...-fd-C" (experiments/inn_regulariser_grid.py)."""
    groups = {"NF": [n for n in runs if "-nf-" in n], "FD": [n for n in runs if "-fd-" in n]}
    none = [n for n in runs if n.endswith("-none")]
    fig = Figure(figsize=(14, 6.4))
    FigureCanvasAgg(fig)
    for row, (label, names) in enumerate(groups.items()):
        for col, (column, ylabel, log) in enumerate(PANELS):
            ax = fig.add_subplot(2, 4, 4 * row + col + 1)
            for i, name in enumerate(none + names):
                d = read_dynamics(runs[name])
                if not d or not len(d["step"]):
                    continue
                values, steps = d[column], d["step"]
                ok = np.isfinite(values)
                bad = d["condition_non_finite"] > 0 if column != "dynamics_accuracy" else np.zeros_like(ok)
                short = "none" if name.endswith("-none") else f"{label} {name.split(f'-{label.lower()}-', 1)[1]}"
                note = f" ({int(bad.sum())} rows with non-finite estimates)" if bad.any() else ""
                ax.plot(steps[ok], values[ok], color=f"C{i}", label=short + note)
                if bad.any() and ok.any():
                    ax.plot(steps[bad], np.full(int(bad.sum()), np.nanmax(values)), "x", color=f"C{i}")
            if log:
                ax.set_yscale("log")
            ax.set_title(f"{label}: {ylabel}", fontsize=9)
            ax.set_xlabel("step")
            if col == 0:
                ax.legend(fontsize=7)
    if title:
        fig.suptitle(f"INN classifier training dynamics ({title})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, 120)
