"""Every diagnostic of issue 6 item 1 on a batch of model-space inputs, and on a trained run
(`flowforge diagnose RUN_DIR`): reconstruction errors, exact Jacobian spectra of F and F^-1 on a
few examples (float64), |numerical - analytic log-det| on them, power-iteration sigma_max /
sigma_min / condition numbers of F and F^-1, repeated encode/decode drift, and optionally the
out-of-distribution probes. Writes diagnose.json, report.md and two figures."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from flowforge.diagnostics.drift import PUBLIC_CODE_PASSES, encode_decode_drift
from flowforge.diagnostics.jacobian import full_jacobian, singular_value_extremes
from flowforge.diagnostics.logdet_check import analytic_logdet
from flowforge.diagnostics.maps import invertible_map
from flowforge.diagnostics.reconstruction import error_summary, reconstruction_errors
from flowforge.diagnostics.summary import finite_stats

EXACT_SPECTRUM_MAX_DIM = 1024  # one backward pass per dimension and direction: 784 for MNIST is fine


def _svdvals(jac: Tensor) -> Tensor:
    out = torch.full((jac.shape[0], min(jac.shape[1:])), float("nan"), dtype=jac.dtype)
    finite = torch.isfinite(jac).flatten(1).all(dim=1)
    if finite.any():
        out[finite] = torch.linalg.svdvals(jac[finite])
    return out


def exact_spectra(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Float64 on a copy of the model: singular values of J_F at x and of J_{F^-1} at F(x), and
    the analytic and numerical (slogdet of J_F) log-dets."""
    model64 = copy.deepcopy(model).double().eval()
    x64 = x.detach().double().cpu()
    forward, inverse = invertible_map(model64)
    jac = full_jacobian(forward, x64)
    with torch.no_grad():
        z = forward(x64)
        analytic = analytic_logdet(model64, x64).double()
    numerical = torch.full((x64.shape[0],), float("nan"), dtype=torch.float64)
    finite = torch.isfinite(jac).flatten(1).all(dim=1)
    if finite.any():
        numerical[finite] = torch.linalg.slogdet(jac[finite])[1]
    return {"forward": _svdvals(jac), "inverse": _svdvals(full_jacobian(inverse, z)),
            "logdet_analytic": analytic, "logdet_numerical": numerical,
            "logdet_abs_error": (numerical - analytic).abs()}


def diagnose_batch(model: nn.Module, x: Tensor, jacobian_examples: int = 2, condition_examples: int = 8,
                   iters: int = 20, drift_examples: int = 64, passes: int = PUBLIC_CODE_PASSES,
                   batch_size: int = 256, generator: torch.Generator | None = None) -> tuple[dict, dict]:
    """(results, arrays): JSON-ready summaries, and the per-example tensors behind them
    (reconstruction errors, exact spectra) for the figures."""
    model.eval()
    forward, inverse = invertible_map(model)
    errors = reconstruction_errors(forward, inverse, x, batch_size)
    results: dict = {"examples": x.shape[0], "dims": x[0].numel(), "reconstruction": error_summary(errors)}
    arrays: dict = {"errors": errors}

    xc = x[:condition_examples]
    with torch.no_grad():
        zc = forward(xc)
    for name, (f, g, point) in {"forward": (forward, inverse, xc), "inverse": (inverse, forward, zc)}.items():
        ext = singular_value_extremes(f, g, point, iters=iters, exact=False, generator=generator)
        results[f"{name}_power_iteration"] = {k: finite_stats(v) for k, v in ext.items()}
    results["power_iteration"] = {"examples": xc.shape[0], "iters": iters}

    if jacobian_examples and x[0].numel() <= EXACT_SPECTRUM_MAX_DIM:
        spectra = exact_spectra(model, x[:jacobian_examples])
        arrays["spectra"] = {"F": spectra["forward"], "F^-1": spectra["inverse"]}
        results["exact"] = {
            "examples": min(jacobian_examples, x.shape[0]),
            **{f"{name}_{k}": finite_stats(v) for name in ("forward", "inverse") for k, v in (
                ("sigma_max", spectra[name][:, 0]), ("sigma_min", spectra[name][:, -1]),
                ("condition", spectra[name][:, 0] / spectra[name][:, -1]))},
            "logdet_abs_error": finite_stats(spectra["logdet_abs_error"]),
            "logdet_analytic": spectra["logdet_analytic"].tolist(),
            "logdet_numerical": spectra["logdet_numerical"].tolist(),
        }
    elif jacobian_examples:
        results["exact"] = {"skipped": f"{x[0].numel()} dimensions > {EXACT_SPECTRUM_MAX_DIM}"}

    results["drift"] = encode_decode_drift(forward, inverse, x[:drift_examples], passes)
    return results, arrays
