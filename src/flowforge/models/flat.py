"""Base of the models of flat (B, D) data: a `Flow` whose transform the subclass builds, over a
standard-normal base (or a conditional diagonal Gaussian of a context)."""

from __future__ import annotations

from torch import Tensor

from flowforge.bijections.base import Bijection
from flowforge.distributions.normal import StandardNormal
from flowforge.errors import ShapeError
from flowforge.models.base import FlowOfLayers


class FlatFlowModel(FlowOfLayers):
    """log p(x) = log N(f(x); 0, I) + log|det df/dx| for the bijection f the subclass builds and
    passes to `_set_transform`; the loss is the mean NLL in nats."""

    DATA_ARGS = ("dim",)
    LEGACY_KEYS = ((r"^flow\.", "transform."),)

    def __init__(self, dim: int):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim

    def _set_transform(self, transform: Bijection) -> None:
        self._set_flow(transform, StandardNormal((self.dim,)), (self.dim,))

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"{type(self).__name__} expects (B, {self.dim}), got {tuple(x.shape)}")

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(x)
        return super().log_prob(x, context)

    def encode(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        self._check(x)
        return super().encode(x, context)

    def loss(self, batch, generator=None) -> dict[str, Tensor]:
        """Mean NLL of a batch `x` or `(x,)`, or `(x, context)` for a model with a context."""
        x, context = (batch[0], batch[1] if len(batch) > 1 else None) if isinstance(batch, (tuple, list)) else (batch, None)
        nll = -self.log_prob(x, context).mean()
        return {"loss": nll, "nll": nll.detach()}
