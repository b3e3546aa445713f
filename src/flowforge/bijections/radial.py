"""Radial flow (Rezende & Mohamed 2015, "Variational Inference with Normalizing Flows", section
4.1, eq. 14 and the determinant below it, and appendix A.2 for invertibility).

    forward:  z = x + beta h(alpha, r) (x - x0),   r = |x - x0|,   h(alpha, r) = 1 / (alpha + r)
    log|det| = (d - 1) log(1 + beta h) + log(1 + beta h + beta h'(alpha, r) r)
             = (d - 1) log(1 + beta / (alpha + r)) + log(1 + alpha beta / (alpha + r)^2)

with alpha = softplus(a) > 0 and beta = -alpha + softplus(c) > -alpha (appendix A.2's
condition beta >= -alpha, kept strict so the map is a bijection everywhere).

Inverse: z - x0 is x - x0 scaled by (alpha + beta + r) / (alpha + r) > 0, so rho = |z - x0|
fixes r through rho (alpha + r) = r (alpha + beta + r), i.e. r^2 + (alpha + beta - rho) r - alpha rho = 0,
whose one non-negative root is taken in the form without cancellation; then
x = x0 + (z - x0) (alpha + r) / (alpha + beta + r). Exact up to rounding; no iteration.

Not conditional: a context raises a ValueError.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.errors import ShapeError


class Radial(Bijection):
    """One radial transformation of (B, dim) inputs around a learned centre x0 (dim,)."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 1:
            raise ValueError(f"Radial needs dim >= 1, got {dim}")
        self.dim = dim
        self.x0 = nn.Parameter(torch.randn(dim) / dim**0.5)
        self.raw_alpha = nn.Parameter(torch.zeros(()))
        self.raw_beta = nn.Parameter(torch.zeros(()))

    def _check(self, x: Tensor, context: Tensor | None) -> None:
        if context is not None:
            raise ValueError("Radial takes no context (it is not a conditional layer)")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"Radial({self.dim}) expects (B, {self.dim}), got {tuple(x.shape)}")

    def alpha_beta(self) -> tuple[Tensor, Tensor]:
        """alpha > 0 and beta > -alpha (appendix A.2)."""
        alpha = F.softplus(self.raw_alpha)
        return alpha, F.softplus(self.raw_beta) - alpha

    def _terms(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """x0, alpha and alpha + beta = softplus(c) > 0, the latter kept apart from beta: when it is
        far smaller than alpha, alpha + (beta) would round to 0 and the map look singular."""
        return self.x0.to(dtype), F.softplus(self.raw_alpha).to(dtype), F.softplus(self.raw_beta).to(dtype)

    def _log_det(self, r: Tensor, alpha: Tensor, excess: Tensor) -> Tensor:
        """log|det| of the forward at radius r, with excess = alpha + beta:
        (d - 1) log((excess + r) / (alpha + r)) + log((r (r + 2 alpha) + alpha excess) / (alpha + r)^2),
        every term non-negative (no cancellation)."""
        log_ar = torch.log(alpha + r)
        return ((self.dim - 1) * (torch.log(excess + r) - log_ar)
                + torch.log(r * (r + 2 * alpha) + alpha * excess) - 2 * log_ar)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, context)
        x0, alpha, excess = self._terms(x.dtype)
        offset = x - x0
        r = offset.norm(dim=1)
        # z = x + beta / (alpha + r) (x - x0), with 1 + beta / (alpha + r) = (excess + r) / (alpha + r)
        z = x0 + ((excess + r) / (alpha + r))[:, None] * offset
        return z, self._log_det(r, alpha, excess)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z, context)
        x0, alpha, excess = self._terms(z.dtype)
        offset = z - x0
        rho = offset.norm(dim=1)
        p = excess - rho
        root = torch.sqrt(p.pow(2) + 4 * alpha * rho)
        # both branches are finite: p + root > 0 whenever rho > 0, and root >= |p|
        r = torch.where(p >= 0, 2 * alpha * rho / (p + root).clamp_min(torch.finfo(z.dtype).tiny), 0.5 * (root - p))
        x = x0 + ((alpha + r) / (excess + r))[:, None] * offset
        return x, -self._log_det(r, alpha, excess)
