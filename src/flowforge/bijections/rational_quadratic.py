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


def _knot_positions(unnormalized: Tensor, bound: float, min_sizes: tuple[float, ...]) -> Tensor:
    """K + 1 knot positions on [-bound, bound] from (N, K, M) raw sizes, bins second, for N sets of
    knots with minimum bin sizes `min_sizes` (one per set): (N, K + 1, M), the end knots exactly
    at +-bound."""
    sets, bins = unnormalized.shape[:2]
    if len(set(min_sizes)) == 1:
        scale, offset = 2 * bound * (1 - min_sizes[0] * bins), 2 * bound * min_sizes[0]
    else:
        scale = unnormalized.new_tensor([2 * bound * (1 - m * bins) for m in min_sizes]).view(sets, 1, 1)
        offset = unnormalized.new_tensor([2 * bound * m for m in min_sizes]).view(sets, 1, 1)
    # interior knots from the first K - 1 cumulative sizes; the cumulative sum of all K ends at 1
    # only up to round-off, so the end knots are set to exactly +-bound instead
    sizes = torch.softmax(unnormalized, dim=1)[:, :-1] * scale + offset
    interior = torch.cumsum(sizes, dim=1).sub(bound)
    return F.pad(F.pad(interior, (0, 0, 1, 0), value=-bound), (0, 0, 0, 1), value=bound)


def _check_minimums(bins: int, min_bin_width: float, min_bin_height: float) -> None:
    if min_bin_width * bins >= 1 or min_bin_height * bins >= 1:
        raise ValueError(f"minimum bin width/height ({min_bin_width}, {min_bin_height}) too large for {bins} bins")


def _packed(widths: Tensor, heights: Tensor, derivatives: Tensor, min_bin_width: float,
            min_bin_height: float) -> Tensor:
    """The three raw tensors (..., K), (..., K), (..., K - 1) as one (..., 3K - 1), checked."""
    bins = widths.shape[-1]
    if heights.shape[-1] != bins or derivatives.shape[-1] != bins - 1:
        raise ShapeError(f"a {bins}-bin spline needs (..., {bins}) widths and heights and (..., {bins - 1}) "
                         f"derivatives, got {tuple(widths.shape)}, {tuple(heights.shape)}, {tuple(derivatives.shape)}")
    _check_minimums(bins, min_bin_width, min_bin_height)
    return torch.cat([widths, heights, derivatives], dim=-1)


def _knots_params_first(raw: Tensor, bins: int, bound: float, min_bin_width: float, min_bin_height: float,
                        min_derivative: float) -> Tensor:
    """(x_k), (y_k), (d_k) stacked: (3, K + 1, M), from (3K - 1, M) raw numbers."""
    knots = _knot_positions(raw[:2 * bins].view(2, bins, -1), bound, (min_bin_width, min_bin_height))
    shift = math.log(math.expm1(1 - min_derivative))  # softplus(shift) = 1 - min_derivative
    interior = F.softplus(raw[2 * bins:] + shift).add(min_derivative)
    return torch.cat([knots, F.pad(interior, (0, 0, 1, 1), value=1.0)[None]])


def spline_knots(unnormalized_widths: Tensor, unnormalized_heights: Tensor, unnormalized_derivatives: Tensor,
                 bound: float = 3.0, min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
                 min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
                 min_derivative: float = DEFAULT_MIN_DERIVATIVE) -> tuple[Tensor, Tensor, Tensor]:
    """The knots (x_k), (y_k) and derivatives (d_k), k = 0..K, each of shape (..., K + 1)."""
    bins, batch = unnormalized_widths.shape[-1], unnormalized_widths.shape[:-1]
    raw = _packed(unnormalized_widths, unnormalized_heights, unnormalized_derivatives, min_bin_width, min_bin_height)
    knots = _knots_params_first(raw.reshape(-1, raw.shape[-1]).t().contiguous(), bins, bound, min_bin_width,
                                min_bin_height, min_derivative)
    return tuple(k.t().reshape(*batch, bins + 1) for k in knots)  # type: ignore[return-value]


def rational_quadratic_spline(inputs: Tensor, unnormalized_widths: Tensor, unnormalized_heights: Tensor,
                              unnormalized_derivatives: Tensor, inverse: bool = False, bound: float = 3.0,
                              min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
                              min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
                              min_derivative: float = DEFAULT_MIN_DERIVATIVE) -> tuple[Tensor, Tensor]:
    """The spline (or, with ``inverse``, its inverse) applied elementwise.

    ``inputs`` has any shape S; the raw widths and heights have shape S + (K,), the raw
    derivatives S + (K - 1,). Returns the outputs (shape S) and the elementwise log|d out / d in|
    (shape S): 0 in the tails |input| > bound, where the map is the identity. (The layers call
    `rational_quadratic_spline_params_first`, which takes the raw numbers in one tensor.)
    """
    if unnormalized_widths.shape[:-1] != inputs.shape:
        raise ShapeError(f"spline parameters must have shape {tuple(inputs.shape)} + (K,), "
                         f"got {tuple(unnormalized_widths.shape)}")
    raw = _packed(unnormalized_widths, unnormalized_heights, unnormalized_derivatives, min_bin_width, min_bin_height)
    return rational_quadratic_spline_params_first(inputs, raw.movedim(-1, 0), inverse, bound, min_bin_width,
                                                  min_bin_height, min_derivative)


def rational_quadratic_spline_params_first(inputs: Tensor, raw: Tensor, inverse: bool = False, bound: float = 3.0,
                                           min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
                                           min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
                                           min_derivative: float = DEFAULT_MIN_DERIVATIVE) -> tuple[Tensor, Tensor]:
    """`rational_quadratic_spline` with the 3K - 1 raw numbers first: ``raw`` of shape (3K - 1,) + S,
    ``raw[:K]`` the widths, ``raw[K:2K]`` the heights, ``raw[2K:]`` the derivatives of every element.

    Computed with the bins as the leading dimension of (bins, elements) tensors: on a CPU a
    softmax over a short last dimension costs 3-9x more than over a leading one (K = 8, 512 to
    32k elements, `benchmarks/spline_layout.py`), and the rest of the work is then elementwise
    on contiguous rows.
    """
    params = raw.shape[0]
    if params % 3 != 2 or tuple(raw.shape[1:]) != tuple(inputs.shape):
        raise ShapeError(f"spline parameters must have shape (3K - 1,) + {tuple(inputs.shape)}, got {tuple(raw.shape)}")
    bins = (params + 1) // 3
    _check_minimums(bins, min_bin_width, min_bin_height)
    dtype = inputs.dtype
    x = inputs.reshape(1, -1)
    knots = _knots_params_first(raw.reshape(params, -1).to(dtype), bins, bound, min_bin_width, min_bin_height,
                                min_derivative)
    inside = x.abs() <= bound
    # evaluate everywhere on the clamped input (finite, so `where` passes clean gradients), keep the tails
    clamped = x.clamp(-bound, bound)
    # the bin k of each value: the number of interior knots <= it, so a value on an interior knot
    # belongs to the bin it starts and one on the last knot to the last bin
    k = (knots[int(inverse), 1:-1] <= clamped).sum(0, keepdim=True)
    # one gather of (x, y, d) at knots k and k + 1: rows (lower, upper) of each
    at = knots.gather(1, torch.cat([k, k + 1]).expand(3, 2, -1))
    lower, upper = at.unbind(1)
    x_k, y_k, d_k = lower.unbind(0)
    width, height = (upper[:2] - lower[:2]).unbind(0)
    d_k1 = upper[2]
    # tensor-tensor arithmetic where it is free: on small CPU tensors an operation with a Python
    # number costs about twice one between two tensors (the number is wrapped as a tensor first)
    slope = height / width
    twice_slope = slope + slope
    delta = d_k1 + d_k - twice_slope

    if inverse:
        dy = clamped[0] - y_k
        a = height * (slope - d_k) + dy * delta
        b = height * d_k - dy * delta
        c = -slope * dy
        root = (b * b - 4 * a * c).clamp_min(0).sqrt()
        # two equal forms of the root in [0, 1], each free of cancellation on its side of b = 0
        # (b > 0 whenever y = y_k; for b < 0, a >= |b| > 0); the unused one gets a safe denominator
        positive = b >= 0
        xi = torch.where(positive, (c + c) / torch.where(positive, -b - root, -1.0),
                         (root - b) / torch.where(positive, 1.0, a + a))
        # round-off can put xi just outside [0, 1] (e.g. at the top of a steep bin); keep the
        # value in the bin, where the log-derivative below belongs, and the gradient unchanged
        xi = xi - (xi - xi.clamp(0, 1)).detach()
        outputs = xi * width + x_k
    else:
        xi = (clamped[0] - x_k) / width
    one_minus_xi = 1 - xi
    xi_1mxi, xi_squared = xi * one_minus_xi, xi * xi
    denominator = slope + delta * xi_1mxi
    if not inverse:
        outputs = y_k + height * (slope * xi_squared + d_k * xi_1mxi) / denominator

    numerator = slope * slope * (d_k1 * xi_squared + twice_slope * xi_1mxi + d_k * one_minus_xi * one_minus_xi)
    log_derivative = (numerator / (denominator * denominator)).log()
    if inverse:
        log_derivative = -log_derivative
    outputs = torch.where(inside[0], outputs, x[0])
    return outputs.view(inputs.shape), torch.where(inside[0], log_derivative, 0.0).view(inputs.shape)


class RationalQuadraticSpline(Bijection):
    """An unconditional elementwise spline on (B, *shape) inputs: its own learned raw widths,
    heights and derivatives per element (zero at initialisation: the identity).
    log|det| = sum of the elementwise log-derivatives. It has no conditioner, so, like actnorm, it
    is the same map for every context and lets a chain's context pass (bijections/base.py)."""

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

    def _transform(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.shape:
            raise ShapeError(f"RationalQuadraticSpline expects (B, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(x.shape)}")
        raw = self.unnormalized.movedim(-1, 0)[:, None].expand(-1, *x.shape)
        y, log_derivative = rational_quadratic_spline_params_first(x, raw, inverse, self.bound, *self.minimums)
        return y, log_derivative.flatten(1).sum(1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(x, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(z, inverse=True)
