"""The 2-D checkerboard stability study (Behrmann et al. 2021, section 4.1.1, supplement C,
figures 2 and 8): an affine coupling flow with sigmoid scale (0, 1), the same with a squashed
sigmoid scale (0.5, 1), and a residual flow (Lipschitz coefficient 0.8), trained on the
checkerboard set; then on a grid wider than the data (the data lie in [-4, 4]^2): the learned
density with non-finite cells marked, the reconstruction error ||x - F^-1(F(x))||_2 and the
condition number sigma_max / sigma_min of J_F (exact 2 x 2 SVD) — diagnostics primitives of
`flowforge.diagnostics`.

All log-densities here are exact: the couplings' by construction, the residual flow's by the
brute-force 2 x 2 log-det that flat-resflow uses in eval mode (training used the unbiased
estimator). The residual flow's inverse is reported twice: the plain fixed point (tolerance
atol = rtol = 1e-5, the paper's setting) and with the two Newton steps flat-resflow adds in eval
mode. Re-running keeps finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from flowforge.bijections.residual import ResidualBlock, ResidualInverseWarning
from flowforge.diagnostics.jacobian import singular_value_extremes
from flowforge.diagnostics.maps import invertible_map
from flowforge.diagnostics.reconstruction import error_summary, reconstruction_errors
from flowforge.experiments.variants import Variant, budget, merged, overrides
from flowforge.runs.pipeline import evaluate_run, evaluated, train_or_resume
from flowforge.runs.run_dir import load_trained
from flowforge.runs.shipped_configs import config_path

DATASET = "checkerboard"
_AFFINE = {"name": "flat-realnvp", "layers": 8, "hidden": [64, 64], "batch_norm": False}
MODELS: dict[str, Variant] = {
    "affine-sigmoid": {"model": {**_AFFINE, "scale": "sigmoid"}},
    "affine-squashed-sigmoid": {"model": {**_AFFINE, "scale": "squashed-sigmoid"}},
    "resflow": {"model": {"name": "flat-resflow", "blocks": 8, "hidden": [64, 64], "coeff": 0.8}},
}
BOUNDS = ((-6.0, 6.0), (-6.0, 6.0))
DATA_BOX = 4.0  # the checkerboard fills [-4, 4]^2
RESOLUTION = 120


def _trained(config: Path, run_dir: Path, variant: Variant, steps: int | None, minutes: float | None,
             progress: bool) -> tuple[dict, torch.nn.Module]:
    result = evaluated(run_dir)
    if result is None:
        train_or_resume(config, [*overrides(merged({"data": {"dataset": DATASET}}, variant)), *budget(steps, minutes)],
                        run_dir, progress=progress)
        result = evaluate_run(run_dir, command=f"flowforge reproduce stability-2d ({run_dir.name})", device="cpu")
    return result, load_trained(run_dir, which="best")[1].eval()


def _grid(resolution: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    (x0, x1), (y0, y1) = BOUNDS
    xs = np.linspace(x0, x1, resolution).astype(np.float32)
    ys = np.linspace(y0, y1, resolution).astype(np.float32)
    gx, gy = np.meshgrid(xs, ys)  # row = y, as viz.density2d.log_density_grid
    return xs, ys, torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], axis=1))


def _summary(values: np.ndarray, inside: np.ndarray) -> dict:
    """error_summary of the whole grid, inside the data box and outside it."""
    out = {}
    for name, sel in (("grid", np.ones_like(inside)), ("inside", inside), ("outside", ~inside)):
        out[name] = error_summary(torch.from_numpy(values[sel]))
    return out


def _inverse_warnings(fn):
    """Run fn, counting residual-block inverse warnings instead of printing each one."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResidualInverseWarning)
        result = fn()
    return result, sum(issubclass(w.category, ResidualInverseWarning) for w in caught)


def _diagnose(model: torch.nn.Module, points: torch.Tensor, test_points: torch.Tensor) -> dict:
    forward, inverse = invertible_map(model)
    start = time.perf_counter()
    errors, warned = _inverse_warnings(lambda: reconstruction_errors(forward, inverse, points, batch_size=4096))
    test_errors, test_warned = _inverse_warnings(
        lambda: reconstruction_errors(forward, inverse, test_points, batch_size=4096))
    extremes = [singular_value_extremes(forward, inverse, chunk, exact=True) for chunk in points.split(4096)]
    condition = torch.cat([e["condition"] for e in extremes]).double()
    return {"errors": errors.numpy(), "test_errors": test_errors, "condition": condition.numpy(),
            "inverse_warnings": warned + test_warned, "seconds": time.perf_counter() - start}


def _fmt(summary: dict, key: str = "max") -> str:
    value = summary[key]
    bad = summary["non_finite"]
    text = "—" if value is None else f"{value:.2e}"
    return text + (f" ({bad} non-finite)" if bad else "")


def reproduce(out_dir: str | Path, config: str | Path = "stability-2d", steps: int | None = None,
              minutes: float | None = None, progress: bool = True, resolution: int = RESOLUTION,
              models: dict[str, Variant] | None = None) -> str:
    """Train the models (default MODELS: label -> typed config values) under `out_dir`, write
    stability-2d.png, results.json and results.md."""
    from flowforge.data.toy2d import load_toy_splits
    from flowforge.viz.density2d import log_density_grid
    from flowforge.viz.stability_maps import save_stability_figure

    out_dir = Path(out_dir)
    xs, ys, points = _grid(resolution)
    inside = (points.abs() <= DATA_BOX).all(dim=1).numpy()
    test_points = load_toy_splits(DATASET).test
    rows, figure_rows, record = [], [], {}
    for label, variant in (models or MODELS).items():
        result, model = _trained(config_path(config), out_dir / label, variant, steps, minutes, progress)
        variants = [(label, None)]
        if any(isinstance(m, ResidualBlock) for m in model.modules()):
            variants = [(f"{label} (fixed point only)", 0), (f"{label} (+ 2 Newton steps)", 2)]
        with torch.no_grad():
            _, _, logp = log_density_grid(model.log_prob, bounds=BOUNDS, resolution=resolution)
        for name, newton in variants:
            for m in model.modules():
                if isinstance(m, ResidualBlock) and newton is not None:
                    m.newton_steps = newton
            diag = _diagnose(model, points, test_points)
            err, cond = _summary(diag["errors"], inside), _summary(diag["condition"], inside)
            test_err = error_summary(diag["test_errors"])
            n_logp_bad = int((~np.isfinite(logp)).sum())
            record[name] = {"test_nll": result["nll"], "test_nll_std_err": result["nll_std_err"],
                            "steps": result["steps"], "train_seconds": result["train_seconds"],
                            "reconstruction": err, "test_reconstruction": test_err, "condition": cond,
                            "non_finite_log_density_cells": n_logp_bad, "inverse_warnings": diag["inverse_warnings"],
                            "diagnostics_seconds": diag["seconds"]}
            rows.append(f"| {name} | {result['nll']:.3f} ± {result['nll_std_err']:.3f} | {result['steps']} "
                        f"({result['train_seconds'] / 60:.1f} min) | {_fmt(test_err)} | {_fmt(err['inside'])} | "
                        f"{_fmt(err['outside'])} | {_fmt(cond['inside'], 'median')} / {_fmt(cond['inside'])} | "
                        f"{_fmt(cond['outside'], 'median')} / {_fmt(cond['outside'])} | {n_logp_bad} | "
                        f"{diag['inverse_warnings']} |")
            figure_rows.append((name, logp, diag["errors"].reshape(len(ys), len(xs)),
                                diag["condition"].reshape(len(ys), len(xs))))
    save_stability_figure(out_dir / "stability-2d.png", xs, ys, figure_rows)
    (out_dir / "results.json").write_text(json.dumps(record, indent=2))
    header = ("| model | test NLL (nats) | steps (train time) | max recon. error, test set | max recon. error, "
              "grid inside [-4,4]² | max recon. error, grid outside | cond(J_F) inside: median / max | "
              "cond(J_F) outside: median / max | non-finite log p cells | inverse warnings |")
    table = "\n".join([header, "|---" * 10 + "|", *rows])
    (out_dir / "results.md").write_text(
        f"Checkerboard, grid {resolution}x{resolution} over [-6, 6]^2 (the data fill [-4, 4]^2); "
        "reconstruction error ||x - F^-1(F(x))||_2 in float32, condition number from the exact 2x2 "
        "Jacobian SVD; non-finite values counted, never dropped.\n\n" + table + "\n")
    return table
