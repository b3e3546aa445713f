"""Figures of the stability diagnostics (Behrmann et al. 2021): reconstruction-error histograms,
Jacobian singular-value spectra and attack error curves. Non-finite values are never hidden:
histograms and curves count them in the legend.

Matplotlib through `Figure` + `FigureCanvasAgg` (no pyplot backend chosen at import)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from flowforge.viz.atomic_file import save_figure


def _new_figure(width: float = 6.0, height: float = 4.0):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def _non_finite_note(values: Tensor) -> str:
    bad = int((~torch.isfinite(values)).sum())
    return f" ({bad} non-finite)" if bad else ""


def save_error_histogram(path: str | Path, errors: dict[str, Tensor], title: str = "reconstruction error") -> Path:
    """Histogram of log10 ||x - F^-1(F(x))|| per named set of errors; exact zeros are drawn at the
    smallest positive error, non-finite ones are counted in the legend."""
    fig, ax = _new_figure()
    finite_all = [e[torch.isfinite(e)].double() for e in errors.values()]
    positive = torch.cat([e[e > 0] for e in finite_all]) if finite_all else torch.zeros(0)
    floor = float(positive.min()) if positive.numel() else 1e-12
    for (name, e), kept in zip(errors.items(), finite_all):
        logs = np.log10(kept.clamp_min(floor).numpy())
        ax.hist(logs, bins=40, alpha=0.6, label=f"{name}: {kept.numel()} finite{_non_finite_note(e)}")
    ax.set_xlabel("log10 reconstruction error (L2, model space)")
    ax.set_ylabel("examples")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def save_spectrum(path: str | Path, spectra: dict[str, Tensor], title: str = "Jacobian singular values") -> Path:
    """Sorted singular values (log scale) of each named (B, D) spectrum, one line per example."""
    fig, ax = _new_figure()
    for i, (name, s) in enumerate(spectra.items()):
        colour = f"C{i}"
        for j, row in enumerate(s.double()):
            ax.plot(np.arange(1, row.numel() + 1), row.numpy(), color=colour, alpha=0.8,
                    label=f"{name}{_non_finite_note(s)}" if j == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("index (descending)")
    ax.set_ylabel("singular value")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def save_attack_curves(path: str | Path, curves: dict[str, Tensor], title: str = "invertibility attack") -> Path:
    """Per named model, the (steps + 1, B) reconstruction errors during the attack: the median and
    the max over examples per step (log scale); non-finite steps are left as gaps and counted."""
    fig, ax = _new_figure()
    for i, (name, c) in enumerate(curves.items()):
        c = c.double()
        finite = torch.where(torch.isfinite(c), c, torch.full_like(c, float("nan")))
        steps = np.arange(c.shape[0])
        note = _non_finite_note(c[-1])
        with warnings.catch_warnings():  # a step where every example is broken is a gap, not an error
            warnings.simplefilter("ignore", RuntimeWarning)
            median, top = np.nanmedian(finite.numpy(), axis=1), np.nanmax(finite.numpy(), axis=1)
        ax.plot(steps, median, color=f"C{i}", label=f"{name} median{note}")
        ax.plot(steps, top, color=f"C{i}", linestyle="--", label=f"{name} max (finite)")
    ax.set_yscale("log")
    ax.set_xlabel("attack step")
    ax.set_ylabel("||x' - F^-1(F(x'))||")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)
