"""A few stability numbers logged to metrics.csv every `train.diagnose_every` steps (0 = off):
reconstruction error of a fixed validation batch and power-iteration condition numbers of F on
its first examples, for the weights being trained (not the EMA copy), so the onset of an
exploding inverse shows in the training log (Behrmann et al. 2021, figure 4 tracks these)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowforge.diagnostics.jacobian import singular_value_extremes
from flowforge.diagnostics.maps import invertible_map
from flowforge.diagnostics.reconstruction import error_summary, reconstruction_errors
from flowforge.diagnostics.summary import finite_stats

DIAGNOSE_EXAMPLES = 64  # validation examples whose round trip is checked
CONDITION_EXAMPLES = 4  # of those, the ones whose condition number is estimated
POWER_ITERS = 10

COLUMNS = ("recon_mean", "recon_max", "recon_non_finite", "condition_median", "condition_max")


def model_inputs(model: nn.Module, tensors: tuple[Tensor, ...], generator: torch.Generator | None = None) -> Tensor:
    """Model-space inputs: images quantised and dequantised as in training; flat data as is."""
    return model.prepare(tensors[0], generator) if hasattr(model, "prepare") else tensors[0].float()


def _number(value) -> float:
    return math.nan if value is None else float(value)


def training_diagnostics(model: nn.Module, x: Tensor, condition_examples: int = CONDITION_EXAMPLES,
                         iters: int = POWER_ITERS, seed: int = 0) -> dict[str, float]:
    """The COLUMNS values for `model` on model-space inputs x (eval mode inside, mode restored)."""
    was_training = model.training
    model.eval()
    try:
        forward, inverse = invertible_map(model)
        rec = error_summary(reconstruction_errors(forward, inverse, x))
        gen = torch.Generator().manual_seed(seed)
        cond = finite_stats(singular_value_extremes(forward, inverse, x[:condition_examples], iters=iters,
                                                    exact=False, generator=gen)["condition"])
    finally:
        model.train(was_training)
    return {"recon_mean": _number(rec["mean"]), "recon_max": _number(rec["max"]),
            "recon_non_finite": float(rec["non_finite"]), "condition_median": _number(cond["median"]),
            "condition_max": _number(cond["max"]) if not cond["non_finite"] else math.inf}
