"""Monotonic rational-quadratic spline (Durkan et al. 2019, "Neural Spline Flows", section 3.1,
eqs. 4-8 and appendix A), elementwise on [-B, B] with identity tails outside.

Each element has K bins given by 3K - 1 unnormalised numbers: K widths, K heights (softmax, then
``min + (1 - K * min) * p`` so no bin is thinner than the minimum, scaled to [-B, B]) and K - 1
interior knot derivatives (``min_derivative + softplus(u + c)``, with c chosen so that u = 0
gives the derivative 1). The two boundary derivatives are fixed at 1, matching the slope of the
identity tails, so the map is continuous and C1 on the whole real line. With all raw numbers at
zero the spline is the identity (uniform bins, unit derivatives), so a zero-initialised
conditioner starts a spline flow at the identity.

In bin k, with xi = (x - x_k) / w_k, s_k = h_k / w_k and knot derivatives d_k, d_{k+1}:

    y = y_k + h_k [s_k xi^2 + d_k xi (1 - xi)] / [s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi)]    (eq. 4)

    dy/dx = s_k^2 [d_{k+1} xi^2 + 2 s_k xi (1 - xi) + d_k (1 - xi)^2]
            / [s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi)]^2                                      (eq. 5)

The inverse solves the quadratic a xi^2 + b xi + c = 0 of appendix A (eqs. 6-8) with

    a = h_k (s_k - d_k) + (y - y_k) delta,   b = h_k d_k - (y - y_k) delta,   c = -s_k (y - y_k),
    delta = d_{k+1} + d_k - 2 s_k,

taking the root in [0, 1] as xi = 2c / (-b - sqrt(b^2 - 4ac)) when b >= 0, the form without
cancellation there, and as the equal (sqrt(b^2 - 4ac) - b) / (2a) when b < 0 (a flat bin whose
end derivatives are steep), where the first form would subtract two nearly equal numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.errors import ShapeError

DEFAULT_MIN_BIN_WIDTH = 1e-3
DEFAULT_MIN_BIN_HEIGHT = 1e-3
DEFAULT_MIN_DERIVATIVE = 1e-3


def params_per_dim(bins: int) -> int:
    """Raw numbers per element for a K-bin spline: K widths, K heights, K - 1 derivatives."""
    return 3 * bins - 1


def _knot_positions(unnormalized: Tensor, bound: float, min_size: float) -> Tensor:
    """K + 1 knot positions on [-bound, bound], the end knots exactly at +-bound."""
    bins = unnormalized.shape[-1]
    # interior knots from the first K - 1 cumulative sizes; the cumulative sum of all K ends at 1
    # only up to round-off, so the end knots are set to exactly +-bound instead
    sizes = (min_size + (1 - min_size * bins) * torch.softmax(unnormalized, dim=-1))[..., :-1]
    interior = torch.cumsum(sizes, dim=-1).mul(2 * bound).sub(bound)
    return F.pad(F.pad(interior, (1, 0), value=-bound), (0, 1), value=bound)


def spline_knots(unnormalized_widths: Tensor, unnormalized_heights: Tensor, unnormalized_derivatives: Tensor,
                 bound: float = 3.0, min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
                 min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
                 min_derivative: float = DEFAULT_MIN_DERIVATIVE) -> tuple[Tensor, Tensor, Tensor]:
    """The knots (x_k), (y_k) and derivatives (d_k), k = 0..K, each of shape (..., K + 1)."""
    bins = unnormalized_widths.shape[-1]
    if unnormalized_heights.shape[-1] != bins or unnormalized_derivatives.shape[-1] != bins - 1:
        raise ShapeError(
            f"a {bins}-bin spline needs (..., {bins}) widths and heights and (..., {bins - 1}) derivatives, got "
            f"{tuple(unnormalized_widths.shape)}, {tuple(unnormalized_heights.shape)}, "
            f"{tuple(unnormalized_derivatives.shape)}"
        )
    if min_bin_width * bins >= 1 or min_bin_height * bins >= 1:
        raise ValueError(f"minimum bin width/height ({min_bin_width}, {min_bin_height}) too large for {bins} bins")
    knots_x = _knot_positions(unnormalized_widths, bound, min_bin_width)
    knots_y = _knot_positions(unnormalized_heights, bound, min_bin_height)
    shift = math.log(math.expm1(1 - min_derivative))  # softplus(shift) = 1 - min_derivative
    interior = min_derivative + F.softplus(unnormalized_derivatives + shift)
    derivatives = F.pad(interior, (1, 1), value=1.0)
    return knots_x, knots_y, derivatives


def _bin_index(knots: Tensor, values: Tensor) -> Tensor:
    """Index k (shape S + (1,)) of the bin [knots_k, knots_{k+1}) holding each value of shape S in
    [knots_0, knots_K]: the number of interior knots <= the value, so a value on an interior knot
    belongs to the bin it starts and one on the last knot to the last bin."""
    return torch.searchsorted(knots[..., 1:-1].contiguous(), values[..., None].contiguous(), right=True)


def rational_quadratic_spline(inputs: Tensor, unnormalized_widths: Tensor, unnormalized_heights: Tensor,
                              unnormalized_derivatives: Tensor, inverse: bool = False, bound: float = 3.0,
                              min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
                              min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
                              min_derivative: float = DEFAULT_MIN_DERIVATIVE) -> tuple[Tensor, Tensor]:
    """The spline (or, with ``inverse``, its inverse) applied elementwise.

    ``inputs`` has any shape S; the raw widths and heights have shape S + (K,), the raw
    derivatives S + (K - 1,). Returns the outputs (shape S) and the elementwise log|d out / d in|
    (shape S): 0 in the tails |input| > bound, where the map is the identity.
    """
    if unnormalized_widths.shape[:-1] != inputs.shape:
        raise ShapeError(f"spline parameters must have shape {tuple(inputs.shape)} + (K,), "
                         f"got {tuple(unnormalized_widths.shape)}")
    dtype = inputs.dtype
    knots_x, knots_y, derivatives = spline_knots(
        unnormalized_widths.to(dtype), unnormalized_heights.to(dtype), unnormalized_derivatives.to(dtype),
        bound, min_bin_width, min_bin_height, min_derivative)
    inside = (inputs >= -bound) & (inputs <= bound)
    # evaluate everywhere on the clamped input (finite, so `where` passes clean gradients), keep the tails
    clamped = inputs.clamp(-bound, bound)
    k = _bin_index(knots_y if inverse else knots_x, clamped)  # shape S + (1,)

    # one gather of (x, y, d) at knots k and k + 1 instead of six
    knots = torch.stack([knots_x, knots_y, derivatives], dim=-2)  # S + (3, K + 1)
    at = knots.gather(-1, torch.cat([k, k + 1], dim=-1)[..., None, :].expand(*k.shape[:-1], 3, 2))
    (x_k, x_k1), (y_k, y_k1), (d_k, d_k1) = (at[..., i, :].unbind(-1) for i in range(3))
    width, height = x_k1 - x_k, y_k1 - y_k
    slope = height / width
    delta = d_k1 + d_k - 2 * slope

    if inverse:
        dy = clamped - y_k
        a = height * (slope - d_k) + dy * delta
        b = height * d_k - dy * delta
        c = -slope * dy
        root = (b.pow(2) - 4 * a * c).clamp_min(0).sqrt()
        # two equal forms of the root in [0, 1], each free of cancellation on its side of b = 0
        # (b > 0 whenever y = y_k; for b < 0, a >= |b| > 0); the unused one gets a safe denominator
        positive = b >= 0
        xi = torch.where(positive, 2 * c / torch.where(positive, -b - root, -torch.ones_like(b)),
                         (root - b) / torch.where(positive, torch.ones_like(a), 2 * a))
        # round-off can put xi just outside [0, 1] (e.g. at the top of a steep bin); keep the
        # value in the bin, where the log-derivative below belongs, and the gradient unchanged
        xi = xi - (xi - xi.clamp(0, 1)).detach()
        outputs = xi * width + x_k
        xi_1mxi = xi * (1 - xi)
        denominator = slope + delta * xi_1mxi
    else:
        xi = (clamped - x_k) / width
        xi_1mxi = xi * (1 - xi)
        denominator = slope + delta * xi_1mxi
        outputs = y_k + height * (slope * xi.pow(2) + d_k * xi_1mxi) / denominator

    numerator = slope.pow(2) * (d_k1 * xi.pow(2) + 2 * slope * xi_1mxi + d_k * (1 - xi).pow(2))
    log_derivative = numerator.log() - 2 * denominator.log()
    if inverse:
        log_derivative = -log_derivative
    outputs = torch.where(inside, outputs, inputs)
    return outputs, torch.where(inside, log_derivative, torch.zeros_like(log_derivative))


class RationalQuadraticSpline(Bijection):
    """An unconditional elementwise spline on (B, *shape) inputs: its own learned raw widths,
    heights and derivatives per element (zero at initialisation: the identity).
    log|det| = sum of the elementwise log-derivatives."""

    def __init__(self, shape: int | tuple[int, ...], bins: int = 8, bound: float = 3.0,
                 min_bin_width: float = DEFAULT_MIN_BIN_WIDTH, min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
                 min_derivative: float = DEFAULT_MIN_DERIVATIVE):
        super().__init__()
        self.shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if bins < 1 or bound <= 0:
            raise ValueError(f"a spline needs bins >= 1 and bound > 0, got bins={bins}, bound={bound}")
        self.bins, self.bound = bins, float(bound)
        self.minimums = (min_bin_width, min_bin_height, min_derivative)
        self.unnormalized = nn.Parameter(torch.zeros(*self.shape, params_per_dim(bins)))

    def _transform(self, x: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        if context is not None:
            raise ValueError("RationalQuadraticSpline takes no context (it was built unconditional)")
        if tuple(x.shape[1:]) != self.shape:
            raise ShapeError(f"RationalQuadraticSpline expects (B, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(x.shape)}")
        k = self.bins
        raw = self.unnormalized.expand(x.shape[0], *self.unnormalized.shape)
        y, log_derivative = rational_quadratic_spline(
            x, raw[..., :k], raw[..., k:2 * k], raw[..., 2 * k:], inverse, self.bound, *self.minimums)
        return y, log_derivative.flatten(1).sum(1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(x, context, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(z, context, inverse=True)
