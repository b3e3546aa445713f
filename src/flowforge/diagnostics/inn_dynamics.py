"""Stability of an INN classifier during training (Behrmann et al. 2021, supplement G, figures
14-17: condition number, min / max singular value of J_F and accuracy against training time).

`training_dynamics` measures, on fixed validation images, sigma_max(J_F) and sigma_min(J_F) by power
iteration (diagnostics/jacobian.py: sigma_min = 1 / sigma_max of J_{F^-1} at F(x)) from a fixed
start vector, so that successive rows differ only by the weights, and the accuracy on the first
validation images. Non-finite estimates (an inverse that already overflowed) are counted and
left out of the medians, never dropped silently.
"""

from __future__ import annotations

import math

import torch

from flowforge.diagnostics.jacobian import singular_value_extremes
from flowforge.diagnostics.maps import invertible_map
from flowforge.evaluation.accuracy import classification_accuracy

IMAGES, ITERS, ACCURACY_IMAGES, SEED = 8, 15, 500, 0


def training_dynamics(model, valid: tuple[torch.Tensor, torch.Tensor], batch_size: int = 500,
                      device: torch.device | str = "cpu", images: int = IMAGES, iters: int = ITERS,
                      accuracy_images: int = ACCURACY_IMAGES) -> dict:
    """{sigma_max: largest, sigma_min: smallest, condition_median, condition_max over the finite
    estimates, condition_non_finite, dynamics_accuracy} on the first `images` / `accuracy_images`
    validation images; the model is left in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        x = model.prepare(valid[0][:images].to(device))
        forward, inverse = invertible_map(model)
        sv = singular_value_extremes(forward, inverse, x, iters=iters, exact=False,
                                     generator=torch.Generator().manual_seed(SEED))
        acc = classification_accuracy(model, valid[0][:accuracy_images], valid[1][:accuracy_images],
                                      batch_size=batch_size, device=device)["accuracy"]
    finally:
        model.train(was_training)
    cond = sv["condition"].double().cpu()
    ok = torch.isfinite(cond)
    smax, smin = sv["sigma_max"].double().cpu(), sv["sigma_min"].double().cpu()
    fmax, fmin = smax[torch.isfinite(smax)], smin[torch.isfinite(smin)]
    return {"sigma_max": float(fmax.max()) if fmax.numel() else math.nan,
            "sigma_min": float(fmin.min()) if fmin.numel() else math.nan,
            "condition_median": float(cond[ok].median()) if ok.any() else math.nan,
            "condition_max": float(cond[ok].max()) if ok.any() else math.nan,
            "condition_non_finite": int((~ok).sum()), "dynamics_accuracy": acc}
