"""The bijection contract: every invertible layer maps data -> latent in `forward` and back in `inverse`.

Both directions return ``(output, logabsdet)`` where ``logabsdet`` has shape ``(batch,)`` and is
log |det| of the Jacobian of the map just applied (so forward and inverse log-dets of a round
trip sum to zero). An optional keyword ``context`` carries conditioning.

Context rule (docs/conditional-flows.md): a layer whose conditioner reads a context uses it; a
layer with a conditioner built without one refuses one (`refuse_context`); layers with no
conditioner at all (permutations, actnorm, batch norm, squeeze, the elementwise spline) are the same map for every
context and let it pass, so a `Chain` can hand the context to every layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


class Bijection(nn.Module):
    """Base class. Subclasses implement `forward` (x -> z) and `inverse` (z -> x)."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def refuse_context(owner: object, context: Tensor | None) -> None:
    """A layer or distribution built without a context refuses one instead of ignoring it."""
    if context is not None:
        raise ValueError(f"{type(owner).__name__} takes no context (it was built unconditional), "
                         f"but a context of shape {tuple(context.shape)} was given")


def logdet_dtype(x: Tensor) -> torch.dtype:
    """The dtype log-dets of `x` are kept in: float32, or x's dtype if wider (float64)."""
    return x.dtype if x.dtype == torch.float64 else torch.float32


def zero_logdet(x: Tensor) -> Tensor:
    """A ``(batch,)`` zero log-det on x's device, in `logdet_dtype(x)`."""
    return torch.zeros(x.shape[0], device=x.device, dtype=logdet_dtype(x))


def spatial_size(x: Tensor) -> int:
    """Number of positions a per-channel map acts on: H*W for images, 1 for flat (B, D) data.
    From the shape alone (no indexing op, and an empty batch works)."""
    return math.prod(x.shape[2:])


class Chain(Bijection):
    """Composition f_n ∘ ... ∘ f_1: forward applies the layers in order and sums their log-dets;
    inverse applies their inverses in reverse order."""

    def __init__(self, layers: Iterable[Bijection]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = zero_logdet(x)
        for layer in self.layers:
            x, logdet = layer(x, context=context)
            total = total + logdet
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = zero_logdet(z)
        for layer in reversed(self.layers):
            z, logdet = layer.inverse(z, context=context)
            total = total + logdet
        return z, total

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Bijection:
        return self.layers[i]


class Inverse(Bijection):
    """The inverse of a bijection as a bijection in its own right (forward <-> inverse swapped)."""

    def __init__(self, bijection: Bijection):
        super().__init__()
        self.bijection = bijection

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.bijection.inverse(x, context=context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.bijection.forward(z, context=context)


class Unconditional(Bijection):
    """`bijection` as a layer of a conditional chain that does not read the context: the context
    stops here, on purpose and visibly, for models whose context conditions only their base (a
    residual or planar stack with a conditional Gaussian base). The inner layer still refuses a
    context given to it directly."""

    def __init__(self, bijection: Bijection):
        super().__init__()
        self.bijection = bijection

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.bijection(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.bijection.inverse(z)
