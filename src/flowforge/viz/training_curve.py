"""The training curve of one or more runs from their metrics.csv: train and validation bits/dim
(or NLL) against training minutes (the trainer's `elapsed_s`: compute time, validation excluded).

Matplotlib through `Figure` + `FigureCanvasAgg` (no pyplot backend chosen at import)."""

from __future__ import annotations

import csv
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flowforge.viz.atomic_file import save_figure


def read_metrics(path: Path) -> list[dict]:
    """metrics.csv rows as dicts (viz sits below training/, so it reads the CSV itself)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _series(rows: list[dict], event: str, column: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        if r["event"] == event and r.get(column):
            xs.append(float(r["elapsed_s"]) / 60.0)
            ys.append(float(r[column]))
    return xs, ys


def save_training_curve(path: str | Path, runs: dict[str, str | Path], ylim: tuple[float, float] | None = None) -> Path:
    """One figure, a train line (thin) and a validation line (markers) per named run directory."""
    fig = Figure(figsize=(6.5, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, run_dir in runs.items():
        rows = read_metrics(Path(run_dir) / "metrics.csv")
        metric = "bpd" if any(r.get("train_bpd") for r in rows) else "nll"
        xs, ys = _series(rows, "train", f"train_{metric}")
        line = ax.plot(xs, ys, lw=0.8, alpha=0.6, label=f"{label} train")[0]
        vx, vy = _series(rows, "valid", f"valid_{metric}")
        ax.plot(vx, vy, "o-", ms=3, color=line.get_color(), label=f"{label} validation (EMA)")
        ax.set_ylabel("bits/dim" if metric == "bpd" else "NLL")
    ax.set_xlabel("training minutes")
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, 120)
