"""The interface every base density of a `Flow` follows (DESIGN.md, distributions).

A base distribution is an `nn.Module` over events of a fixed `event_shape`:
- `log_prob(z, context=None)`: log-density per example, shape (B,);
- `sample(n, temperature=1.0, context=None, generator=None)`: n draws; reparameterised
  (gradients reach the parameters) where the distribution allows it, `reparameterised` says so;
  `temperature` scales the standard deviation (Glow section 6.2);
- `sample_and_log_prob(n, context=None, generator=None)`: a draw at temperature 1 and its log-density.
A context, when the distribution uses one, is a tensor whose first dimension is the batch; a
distribution that uses none refuses one (`refuse_context`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowforge.bijections.base import refuse_context
from flowforge.errors import ShapeError

__all__ = ["Distribution", "refuse_context"]


class Distribution(nn.Module):
    """Base of flowforge's base densities (module docstring)."""

    event_shape: tuple[int, ...]
    reparameterised: bool = True
    uses_context: bool = False  # whether log_prob / sample read a context

    def __init__(self, event_shape):
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        # device and dtype of draws for distributions without parameters
        self.register_buffer("_reference", torch.zeros(()), persistent=False)

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def sample_and_log_prob(self, n: int, context: Tensor | None = None,
                            generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        z = self.sample(n, 1.0, context, generator)
        return z, self.log_prob(z, context)

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Standard normal noise of shape (n, *event_shape) on this distribution's device and dtype."""
        ref = self._reference
        return torch.randn((n, *self.event_shape), generator=generator, device=ref.device, dtype=ref.dtype)

    def check_event(self, z: Tensor) -> None:
        if tuple(z.shape[1:]) != self.event_shape:
            raise ShapeError(f"{type(self).__name__} expects (B, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(z.shape)}")
