"""Squeeze: 2x2 space-to-depth, (B, C, H, W) -> (B, 4C, H/2, W/2) (RealNVP section 3.6; Glow).

A pure permutation of coordinates, so log|det| = 0. Output channel 4c + 2dy + dx holds input
channel c at offset (dy, dx) of each 2x2 block.
"""

from __future__ import annotations

from torch import Tensor

from flowforge.bijections.base import Bijection, zero_logdet
from flowforge.errors import ShapeError


class Squeeze(Bijection):
    """Trade spatial resolution for channels by a factor of 2 in each spatial dimension."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2:
            raise ShapeError(f"Squeeze expects (B, C, H, W) with even H and W, got {tuple(x.shape)}")
        b, c, h, w = x.shape
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
        return y, zero_logdet(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if z.dim() != 4 or z.shape[1] % 4:
            raise ShapeError(f"Squeeze.inverse expects (B, 4C, H, W), got {tuple(z.shape)}")
        b, c4, h, w = z.shape
        c = c4 // 4
        x = z.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * 2, w * 2)
        return x, zero_logdet(z)
