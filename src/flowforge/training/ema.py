"""Exponential moving average of weights (Polyak averaging, as the public Glow code's EMA), used
for validation, evaluation and sampling."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Holds `shadow`, a frozen copy of a model whose parameters track decay * shadow + (1 - decay) * model.

    Buffers (actnorm's `initialized` flag, batch-norm statistics) are copied as they are.
    With decay 0 the shadow simply equals the model after each update. The decay ramps up with
    the step count (`decay_at`), a pure function of the step so that resumed runs stay exact.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay used at update `step` (0-based): min(decay, (1 + step) / (10 + step)), so early
        averages are not dominated by the initial weights (as TensorFlow's ExponentialMovingAverage
        with num_updates)."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        shadow_params = list(self.shadow.parameters())
        params = [p.detach() for p in model.parameters()]
        decay = self.decay_at(step)
        if decay > 0:
            torch._foreach_lerp_(shadow_params, params, 1.0 - decay)
        else:
            torch._foreach_copy_(shadow_params, params)
        for b_shadow, b in zip(self.shadow.buffers(), model.buffers()):
            b_shadow.copy_(b)

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Make the shadow equal to `model` (after data-dependent init)."""
        self.shadow.load_state_dict(model.state_dict())
