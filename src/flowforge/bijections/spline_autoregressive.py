"""Autoregressive rational-quadratic spline step (Durkan et al. 2019, "Neural Spline Flows",
section 3.2, "autoregressive transform"; the MAF scheme of Papamakarios et al. 2017, section 3.1).

A MADE (`flowforge.nets.made`) with 3K - 1 output heads gives, for each dimension i, the raw
widths, heights and derivatives of a K-bin spline, reading only the dimensions of smaller degree
(and the context, unmasked). Then

    forward  (data -> noise, one pass):   z_i = RQS(x_i; made(x)_i),     log|det| = sum_i log RQS'(x_i)
    inverse  (noise -> data, D passes):   x_i = RQS^{-1}(z_i; made(x)_i)

The MADE's zero-initialised output layer makes a fresh step the identity. Order between steps:
as `MAFStep`, put a permutation between successive steps or alternate ``reverse_order``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from flowforge.bijections.base import Bijection
from flowforge.bijections.rational_quadratic import (
    DEFAULT_MIN_BIN_HEIGHT,
    DEFAULT_MIN_BIN_WIDTH,
    DEFAULT_MIN_DERIVATIVE,
    params_per_dim,
    rational_quadratic_spline_params_first,
)
from flowforge.errors import ShapeError
from flowforge.nets.made import MADE


class SplineAutoregressive(Bijection):
    """One autoregressive spline step on (B, dim) inputs; optional context is fed to the MADE."""

    def __init__(self, dim: int, hidden: Sequence[int], bins: int = 8, bound: float = 3.0, context_dim: int = 0,
                 activation: str = "tanh", reverse_order: bool = False,
                 min_bin_width: float = DEFAULT_MIN_BIN_WIDTH, min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
                 min_derivative: float = DEFAULT_MIN_DERIVATIVE):
        super().__init__()
        if bins < 1 or bound <= 0:
            raise ValueError(f"a spline needs bins >= 1 and bound > 0, got bins={bins}, bound={bound}")
        self.dim, self.bins, self.bound, self.context_dim = dim, bins, float(bound), context_dim
        self.minimums = (min_bin_width, min_bin_height, min_derivative)
        self.made = MADE(dim, hidden, out_multiplier=params_per_dim(bins), activation=activation,
                         order="reverse" if reverse_order else "forward", context_dim=context_dim)

    def _check(self, x: Tensor, context: Tensor | None) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"SplineAutoregressive({self.dim}) expects (B, {self.dim}), got {tuple(x.shape)}")
        if self.context_dim == 0 and context is not None:
            raise ValueError("this SplineAutoregressive was built without context (context_dim=0) but got one")

    def _spline(self, values: Tensor, x: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        """The spline with the MADE's numbers for x, applied to `values`; head p of the MADE is the
        p-th raw number of every dimension."""
        h = self.made(x, context).to(x.dtype)
        raw = h.view(x.shape[0], params_per_dim(self.bins), self.dim).transpose(0, 1)  # (3K - 1, B, dim)
        return rational_quadratic_spline_params_first(values, raw, inverse, self.bound, *self.minimums)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, context)
        z, log_derivative = self._spline(x, x, context, inverse=False)
        return z, log_derivative.sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """D passes of the MADE: after pass t every entry of degree <= t is exact, because its
        spline reads only entries of smaller degree; the last pass's log-derivatives are exact too."""
        self._check(z, context)
        x = z.clone()
        log_derivative = z.new_zeros(z.shape)
        for _ in range(self.dim):
            x, log_derivative = self._spline(z, x, context, inverse=True)
        return x, log_derivative.sum(1)
