"""Rational-quadratic spline coupling (Durkan et al. 2019, "Neural Spline Flows", section 3.2,
with the spline of section 3.1; the coupling scheme of Dinh et al. 2017, eqs. 4-5).

A binary ``mask`` over the features of flat (B, D) data, or over the channels of (B, C, H, W)
images, picks the identity part x_id (mask 1) and the transformed part x_tr (mask 0). A
conditioner network of x_id (with the context concatenated when ``context_dim > 0``) gives
3K - 1 raw spline numbers per transformed element, and

    y_id = x_id,     y_tr = RQS(x_tr; net(x_id, context)),     log|det| = sum log RQS'(x_tr)

(forward); the inverse applies the analytic inverse spline with the same numbers, since y_id = x_id.
For images the context vector is broadcast over the positions and concatenated as channels.

With ``identity_spline=True`` the identity part is transformed too, by a spline of learned
constants (one set of 3K - 1 numbers per identity feature or channel, zero at first: the
identity), y_id = RQS(x_id; theta), as zuko's two-pass NSF does. The conditioner still reads the
untransformed x_id, so the forward pass evaluates both parts in one spline call; the inverse
first inverts y_id, then reads the conditioner.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.bijections.rational_quadratic import (
    DEFAULT_MIN_BIN_HEIGHT,
    DEFAULT_MIN_BIN_WIDTH,
    DEFAULT_MIN_DERIVATIVE,
    params_per_dim,
    rational_quadratic_spline_params_first,
)
from flowforge.errors import ShapeError

NetFactory = Callable[[int, int], nn.Module]
"""Builds the conditioner from (in_features, out_features): in = identity part + context_dim,
out = transformed part * (3K - 1); channels for images."""


def half_mask(dim: int, invert: bool = False) -> Tensor:
    """1 on the first dim // 2 features (or channels): the identity part of a split coupling."""
    mask = torch.zeros(dim)
    mask[: dim // 2] = 1
    return 1 - mask if invert else mask


class SplineCoupling(Bijection):
    """Spline coupling on (B, D) vectors or (B, C, H, W) images split by a 1-D ``mask`` of length
    D or C (1 = identity part). ``net`` is the conditioner itself or a `NetFactory`; it maps
    (B, d_id + context_dim[, H, W]) to (B, d_tr * (3 * bins - 1)[, H, W]), element i's numbers
    being entries i * (3K - 1) .. (i + 1) * (3K - 1) - 1 (widths, heights, derivatives)."""

    def __init__(self, mask: Tensor, net: nn.Module | NetFactory, bins: int = 8, bound: float = 3.0,
                 context_dim: int = 0, min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
                 min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT, min_derivative: float = DEFAULT_MIN_DERIVATIVE,
                 identity_spline: bool = False):
        super().__init__()
        mask = torch.as_tensor(mask).flatten() != 0
        if mask.all() or not mask.any():
            raise ValueError(f"the coupling mask must hold both identity (1) and transformed (0) entries, "
                             f"got {mask.int().tolist()}")
        if bins < 1 or bound <= 0:
            raise ValueError(f"a spline needs bins >= 1 and bound > 0, got bins={bins}, bound={bound}")
        if context_dim < 0:
            raise ValueError(f"context_dim must be >= 0, got {context_dim}")
        self.register_buffer("identity_index", mask.nonzero().flatten())
        self.register_buffer("transform_index", (~mask).nonzero().flatten())
        self.features = mask.numel()
        self.bins, self.bound, self.context_dim = bins, float(bound), context_dim
        self.minimums = (min_bin_width, min_bin_height, min_derivative)
        n_in = len(self.identity_index) + context_dim
        n_out = len(self.transform_index) * params_per_dim(bins)
        self.net = net if isinstance(net, nn.Module) else net(n_in, n_out)
        self.identity_spline: nn.Parameter | None = None
        if identity_spline:
            # (3K - 1, d_id): the raw numbers first, as the spline takes them
            self.identity_spline = nn.Parameter(torch.zeros(params_per_dim(bins), len(self.identity_index)))
            # features in the order (identity part, transformed part) -> the input order
            order = torch.cat([self.identity_index, self.transform_index]).argsort()
            self.register_buffer("_input_order", order, persistent=False)
            self._identity_first = bool((order == torch.arange(len(order))).all())  # `half_mask`: no reordering

    def _check(self, x: Tensor) -> None:
        if x.dim() not in (2, 4) or x.shape[1] != self.features:
            raise ShapeError(f"SplineCoupling expects (B, {self.features}) or (B, {self.features}, H, W), "
                             f"got {tuple(x.shape)}")

    def _conditioner_input(self, x_id: Tensor, context: Tensor | None) -> Tensor:
        if self.context_dim == 0:
            if context is not None:
                raise ValueError("this SplineCoupling was built without context (context_dim=0) but got one")
            return x_id
        if context is None:
            raise ValueError(f"this SplineCoupling was built with context_dim={self.context_dim} but got no context")
        if context.shape != (x_id.shape[0], self.context_dim):
            raise ShapeError(f"SplineCoupling context must be ({x_id.shape[0]}, {self.context_dim}), "
                             f"got {tuple(context.shape)}")
        context = context.to(x_id.dtype)
        if x_id.dim() == 4:
            context = context[:, :, None, None].expand(-1, -1, *x_id.shape[2:])
        return torch.cat([x_id, context], dim=1)

    def _spline_params(self, x_id: Tensor, context: Tensor | None) -> Tensor:
        """The raw numbers as (3K - 1, B, d_tr, [H, W])."""
        h = self.net(self._conditioner_input(x_id, context)).to(x_id.dtype)
        n, p = len(self.transform_index), params_per_dim(self.bins)
        expected = (x_id.shape[0], n * p, *x_id.shape[2:])
        if tuple(h.shape) != expected:
            raise ShapeError(f"SplineCoupling: the conditioner must give {expected}, got {tuple(h.shape)}")
        return h.view(h.shape[0], n, p, *h.shape[2:]).movedim(2, 0)

    def _identity_params(self, x_id: Tensor) -> Tensor:
        """The identity part's learned constants as (3K - 1,) + x_id's shape."""
        raw = self.identity_spline
        raw = raw.view(raw.shape[0], 1, raw.shape[1], *([1] * (x_id.dim() - 2))).expand(-1, *x_id.shape)
        return raw if raw.dtype == x_id.dtype else raw.to(x_id.dtype)

    def _transform(self, x: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        self._check(x)
        x_id, x_tr = x[:, self.identity_index], x[:, self.transform_index]
        if self.identity_spline is None:
            y_tr, log_derivative = self._spline(x_tr, self._spline_params(x_id, context), inverse)
            return x.index_copy(1, self.transform_index, y_tr), log_derivative.flatten(1).sum(1)
        if inverse:  # x_id first: the conditioner reads it
            y_id, log_id = self._spline(x_id, self._identity_params(x_id), inverse)
            y_tr, log_tr = self._spline(x_tr, self._spline_params(y_id, context), inverse)
            y, log_derivative = torch.cat([y_id, y_tr], 1), torch.cat([log_id, log_tr], 1)
        else:  # both parts in one spline call
            raw = torch.cat([self._identity_params(x_id), self._spline_params(x_id, context)], 2)
            y, log_derivative = self._spline(x if self._identity_first else torch.cat([x_id, x_tr], 1), raw, inverse)
        log_det = log_derivative.flatten(1).sum(1)
        return (y, log_det) if self._identity_first else (y[:, self._input_order], log_det)

    def _spline(self, values: Tensor, raw: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        return rational_quadratic_spline_params_first(values, raw, inverse, self.bound, *self.minimums)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(x, context, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(z, context, inverse=True)
