"""The indexed bijection of localised generative flows (LGF paper §3.4; NOTES b.1):

    G(x; u) = (x + t(u)) * exp(s(u)),     log|det D_x G| = sum s(u)
    G^{-1}(z; u) = z * exp(-s(u)) - t(u)

s and t are the two halves (shift first, as lgf@HEAD / cif) of one network of the index u, which
arrives as `context`: a vector u for flat (B, D) data, a per-pixel u of shape (B, U, H, W) for
images. For every fixed u it is an elementwise affine bijection of x (a batch-norm-like layer
whose scale and shift depend on u), which is what the contract test checks.
"""

from __future__ import annotations

from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.errors import ShapeError


class IndexedAffine(Bijection):
    """G(x; u) with (t, s) = net(u) split in two along dim 1; `x_shape` is the shape of one x."""

    def __init__(self, x_shape: tuple[int, ...], net: nn.Module):
        super().__init__()
        self.x_shape = tuple(int(s) for s in x_shape)
        self.net = net

    def _shift_log_scale(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.x_shape:
            raise ShapeError(f"IndexedAffine expects x of shape (B, {', '.join(map(str, self.x_shape))}), "
                             f"got {tuple(x.shape)}")
        if u is None or u.shape[0] != x.shape[0]:
            raise ShapeError(f"IndexedAffine needs the index u as context, one per example ({x.shape[0]}), "
                             f"got {None if u is None else tuple(u.shape)}")
        h = self.net(u).to(x.dtype)
        if h.shape[1] != 2 * self.x_shape[0] or tuple(h.shape[2:]) != self.x_shape[1:]:
            raise ShapeError(f"IndexedAffine: the s/t network must give (B, {2 * self.x_shape[0]}, "
                             f"{', '.join(map(str, self.x_shape[1:]))}), got {tuple(h.shape)}")
        shift, log_scale = h.chunk(2, dim=1)
        return shift, log_scale

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_log_scale(x, context)
        return (x + shift) * log_scale.exp(), log_scale.flatten(1).sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_log_scale(z, context)
        return z * (-log_scale).exp() - shift, -log_scale.flatten(1).sum(1)


class FixedIndex(Bijection):
    """x -> G(x; u0) for one fixed index u0 (shape of one u), shared by every example: the
    indexed bijection seen as an ordinary bijection (used by the contract test)."""

    def __init__(self, bijection: IndexedAffine, u: Tensor):
        super().__init__()
        self.bijection = bijection
        self.register_buffer("u", u)

    def _context(self, x: Tensor) -> Tensor:
        return self.u.to(x.dtype).expand(x.shape[0], *self.u.shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.bijection(x, context=self._context(x))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.bijection.inverse(z, context=self._context(z))
