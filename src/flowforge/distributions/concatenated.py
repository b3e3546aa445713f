"""A product of independent distributions over consecutive pieces of one flat latent: the base of
a multi-scale flow, whose latent is every factored-out part flattened and concatenated
(bijections/multiscale.py). Part i covers the next prod(parts[i].event_shape) coordinates."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowforge.distributions.base import Distribution
from flowforge.errors import ShapeError


class Concatenated(Distribution):
    """p(z) = prod_i p_i(z_i) for z = cat(flatten(z_1), ..., flatten(z_k)).

    The context goes to the parts that use one. `temperature` in `sample` is one value or one per
    part. `draw_order` (a permutation of the part indices) is the order in which the parts draw
    their noise from the generator (default: in order)."""

    def __init__(self, parts: Sequence[Distribution], draw_order: Sequence[int] | None = None):
        self.sizes = [math.prod(p.event_shape) for p in parts]
        super().__init__((sum(self.sizes),))
        self.parts = nn.ModuleList(parts)
        self.draw_order = list(range(len(parts))) if draw_order is None else [int(i) for i in draw_order]
        if sorted(self.draw_order) != list(range(len(parts))):
            raise ValueError(f"draw_order must be a permutation of 0..{len(parts) - 1}, got {self.draw_order}")
        self.uses_context = any(p.uses_context for p in parts)

    def split(self, z: Tensor) -> list[Tensor]:
        """The parts of a flat latent (B, D), each reshaped to its event shape."""
        self.check_event(z)
        return [piece.reshape(z.shape[0], *p.event_shape) for piece, p in zip(z.split(self.sizes, dim=1), self.parts)]

    def join(self, parts: Sequence[Tensor]) -> Tensor:
        """The flat latent (B, D) of its parts."""
        if len(parts) != len(self.parts):
            raise ShapeError(f"need {len(self.parts)} latent parts, got {len(parts)}")
        for z, p in zip(parts, self.parts):
            p.check_event(z)
        return torch.cat([z.reshape(z.shape[0], -1) for z in parts], dim=1)

    def _context(self, part: Distribution, context: Tensor | None) -> Tensor | None:
        return context if part.uses_context else None

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return self.log_prob_parts(self.split(z), context)

    def log_prob_parts(self, pieces: Sequence[Tensor], context: Tensor | None = None) -> Tensor:
        """log p of a latent given as its parts (no flattening)."""
        if len(pieces) != len(self.parts):
            raise ShapeError(f"need {len(self.parts)} latent parts, got {len(pieces)}")
        total = 0.0
        for piece, part in zip(pieces, self.parts):
            total = total + part.log_prob(piece, self._context(part, context))
        return total

    def temperatures(self, temperature) -> list[float]:
        if isinstance(temperature, (int, float)):
            return [float(temperature)] * len(self.parts)
        temps = [float(t) for t in temperature]
        if len(temps) != len(self.parts):
            raise ValueError(f"need one temperature or {len(self.parts)} (one per latent part), got {len(temps)}")
        return temps

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        temps = self.temperatures(temperature)
        drawn: dict[int, Tensor] = {}
        for i in self.draw_order:
            part = self.parts[i]
            drawn[i] = part.sample(n, temps[i], self._context(part, context), generator)
        return self.join([drawn[i] for i in range(len(self.parts))])
