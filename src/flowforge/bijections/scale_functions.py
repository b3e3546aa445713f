"""Scale functions for affine coupling: map the network's raw output h to (scale, log scale).

- ``sigmoid``: sigmoid(h + 2), range (0, 1) — the public Glow code.
- ``exp``: exp(h), range (0, inf) — RealNVP.
- ``tanh-exp``: exp(bound * tanh(h / bound)), range (e^-bound, e^bound) — a bounded exp.
- ``squashed-sigmoid``: 0.5 * sigmoid(h + 2) + 0.5, range (0.5, 1) — Behrmann et al. 2021,
  "Understanding and mitigating exploding inverses in invertible neural networks", section 5:
  bounding the scale from below bounds the inverse's Lipschitz constant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

TANH_EXP_BOUND = 2.0


def _sigmoid(h: Tensor) -> tuple[Tensor, Tensor]:
    log_scale = F.logsigmoid(h + 2.0)
    return log_scale.exp(), log_scale


def _exp(h: Tensor) -> tuple[Tensor, Tensor]:
    return h.exp(), h


def _tanh_exp(h: Tensor) -> tuple[Tensor, Tensor]:
    log_scale = TANH_EXP_BOUND * torch.tanh(h / TANH_EXP_BOUND)
    return log_scale.exp(), log_scale


def _squashed_sigmoid(h: Tensor) -> tuple[Tensor, Tensor]:
    # log(0.5 * sigmoid(a) + 0.5) = log(0.5) + log(1 + sigmoid(a)), computed without cancellation
    scale = 0.5 * torch.sigmoid(h + 2.0) + 0.5
    return scale, math.log(0.5) + torch.log1p(torch.sigmoid(h + 2.0))


SCALE_FUNCTIONS = {
    "sigmoid": _sigmoid,
    "exp": _exp,
    "tanh-exp": _tanh_exp,
    "squashed-sigmoid": _squashed_sigmoid,
}


def get_scale_function(name: str):
    """The scale function called `name`; raises ValueError listing the known names."""
    try:
        return SCALE_FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown scale function {name!r}; expected one of {sorted(SCALE_FUNCTIONS)}") from None
