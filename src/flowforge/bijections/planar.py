"""Planar flow (Rezende & Mohamed 2015, "Variational Inference with Normalizing Flows", section
4.1, eqs. 10-12, and appendix A.1 for invertibility).

    forward:  z = x + u_hat tanh(w^T x + b),     log|det| = log|1 + u_hat^T w tanh'(w^T x + b)|

The map is invertible when w^T u_hat > -1; appendix A.1's reparameterisation of the free vector u,

    u_hat = u + (m(w^T u) - w^T u) w / ||w||^2,     m(a) = -1 + softplus(a),

gives w^T u_hat = m(w^T u) > -1, so the map is strictly increasing along w.

Inverse: writing alpha = w^T x + b, the forward gives w^T z + b = alpha + (w^T u_hat) tanh(alpha),
a scalar equation g(alpha) = 0 with g strictly increasing and its root within |w^T u_hat| of
w^T z + b. It is solved in float64 by bisection on that bracket until it is narrower than
`ROOT_TOLERANCE` (1 + |alpha|) = 1e-12 (1 + |alpha|) (at most 64 halvings), then one Newton step
kept inside the bracket: |alpha - alpha*| <= 0.5e-12 (1 + |alpha*|), far below float32
resolution. (The error of x is that divided by the slope g'(alpha), as for any solver: near the
limit w^T u_hat -> -1 the map is nearly flat along w and x is ill-determined by z.)
Then x = z - u_hat tanh(alpha). Gradients of the
inverse flow through a final Newton step taken with autograd on (implicit differentiation:
d alpha / d theta = -dg/d theta / g'(alpha)), so the root search itself is not differentiated.
The inverse's log|det| is minus the forward's at x, i.e. -log g'(alpha).

Not conditional: a context raises a ValueError.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.errors import ShapeError

ROOT_TOLERANCE = 1e-12
"""Bisection stops once the bracket on alpha is narrower than this (times 1 + |alpha|)."""


class Planar(Bijection):
    """One planar transformation of (B, dim) inputs with learned u, w (dim,) and b (scalar)."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 1:
            raise ValueError(f"Planar needs dim >= 1, got {dim}")
        self.dim = dim
        limit = 1 / math.sqrt(dim)
        self.u = nn.Parameter(torch.empty(dim).uniform_(-limit, limit))
        self.w = nn.Parameter(torch.empty(dim).uniform_(-limit, limit))
        self.b = nn.Parameter(torch.zeros(()))

    def _check(self, x: Tensor, context: Tensor | None) -> None:
        if context is not None:
            raise ValueError("Planar takes no context (it is not a conditional layer)")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"Planar({self.dim}) expects (B, {self.dim}), got {tuple(x.shape)}")

    def u_hat(self) -> Tensor:
        """u moved along w so that w^T u_hat = -1 + softplus(w^T u) > -1 (appendix A.1)."""
        wu = self.w @ self.u
        return self.u + (F.softplus(wu) - 1 - wu) * self.w / (self.w @ self.w)

    def _terms(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """u_hat, w, b and softplus(w^T u) = 1 + w^T u_hat, which is kept apart so that the slope
        near the non-invertible limit w^T u_hat -> -1 is not lost to cancellation."""
        return (self.u_hat().to(dtype), self.w.to(dtype), self.b.to(dtype),
                F.softplus(self.w @ self.u).to(dtype))

    @staticmethod
    def _log_slope(alpha: Tensor, excess: Tensor) -> Tensor:
        """log(1 + w^T u_hat tanh'(alpha)) (eq. 12), the log|det| of the forward, written as
        log(tanh^2 + softplus(w^T u) (1 - tanh^2)): two non-negative terms, no cancellation."""
        t2 = torch.tanh(alpha).pow(2)
        return torch.log(t2 + excess * (1 - t2))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, context)
        u, w, b, excess = self._terms(x.dtype)
        alpha = x @ w + b
        return x + torch.tanh(alpha)[:, None] * u, self._log_slope(alpha, excess)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z, context)
        u, w, b, excess = self._terms(z.dtype)
        target, wu = z @ w + b, excess - 1
        root = _increasing_root(target.detach().double(), wu.detach().double()).to(z.dtype)
        # one Newton step with gradients on: the same value, and the implicit-function gradient
        residual = root + wu * torch.tanh(root) - target
        alpha = root - residual / torch.exp(self._log_slope(root, excess))
        return z - torch.tanh(alpha)[:, None] * u, -self._log_slope(alpha, excess)


def _increasing_root(target: Tensor, wu: Tensor) -> Tensor:
    """The root alpha of alpha + wu * tanh(alpha) = target (wu > -1: strictly increasing in alpha),
    bracketed by target -+ |wu|, by bisection then one Newton step (kept only inside the bracket)."""
    spread = wu.abs() + 1e-300
    low, high = target - spread, target + spread
    for _ in range(64):
        mid = 0.5 * (low + high)
        above = mid + wu * torch.tanh(mid) > target
        high, low = torch.where(above, mid, high), torch.where(above, low, mid)
        if ((high - low) <= ROOT_TOLERANCE * (1 + mid.abs())).all():
            break
    alpha = 0.5 * (low + high)
    slope = 1 + wu * (1 - torch.tanh(alpha).pow(2))
    newton = alpha - (alpha + wu * torch.tanh(alpha) - target) / slope
    return torch.where((newton >= low) & (newton <= high), newton, alpha)
