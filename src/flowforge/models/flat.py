"""Base of the models of flat (B, D) data: a bijection to a standard normal."""

from __future__ import annotations

import torch
from torch import Tensor

from flowforge.bijections.base import Bijection
from flowforge.distributions.gaussian import diag_gaussian_log_prob
from flowforge.errors import ShapeError
from flowforge.models.base import FlowModel


class FlatFlowModel(FlowModel):
    """log p(x) = log N(f(x); 0, I) + log|det df/dx| for a bijection f set by the subclass as
    `self.flow`; the loss is the mean NLL in nats."""

    DATA_ARGS = ("dim",)
    flow: Bijection

    def __init__(self, dim: int):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"{type(self).__name__} expects (B, {self.dim}), got {tuple(x.shape)}")

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(x)
        z, logdet = self.flow(x, context=context)
        return diag_gaussian_log_prob(z) + logdet

    def encode(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        self._check(x)
        return [self.flow(x, context=context)[0]]

    def decode(self, latents: list[Tensor], context: Tensor | None = None) -> Tensor:
        return self.flow.inverse(latents[0], context=context)[0]

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        p = next(self.parameters())
        z = torch.randn(n, self.dim, generator=generator, device=p.device, dtype=p.dtype) * float(temperature)
        return self.decode([z], context)

    def loss(self, batch, generator=None) -> dict[str, Tensor]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        nll = -self.log_prob(x).mean()
        return {"loss": nll, "nll": nll.detach()}
