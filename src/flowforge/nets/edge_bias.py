"""The public Glow code's "edge bias" padding (`tfops.add_edge_padding`), for a k x k convolution
with zero padding (k - 1) / 2.

There, the zero-padded input gets one more channel that is 1 on the padded border and 0 inside,
and the convolution (padding "VALID") has C + 1 input channels. That channel is the same for
every image, so its share of the output is a fixed function of the position only:
conv(border, w) for the border channel's kernel w (out, 1, k, k). This module holds w and returns
that per-position map, (1, out, H, W), to add to the convolution of the data: the same values
as the concatenation, without a (C + 1)-channel copy of the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def border_indicator(height: int, width: int, pad: int, device=None, dtype=None) -> Tensor:
    """(1, 1, H + 2 pad, W + 2 pad): 1 on the `pad`-wide padded border, 0 on the image."""
    border = torch.ones(1, 1, height + 2 * pad, width + 2 * pad, device=device, dtype=dtype)
    border[..., pad:pad + height, pad:pad + width] = 0
    return border


class EdgeBias(nn.Module):
    """The border channel's contribution to a k x k convolution with `out_channels` outputs;
    weights ~ N(0, std^2) (std = 0: zero-initialised, as in the public code's `conv2d_zeros`)."""

    def __init__(self, out_channels: int, kernel_size: int = 3, std: float = 0.05):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"edge bias needs an odd kernel size, got {kernel_size}")
        self.weight = nn.Parameter(torch.randn(out_channels, 1, kernel_size, kernel_size) * std)

    def forward(self, h: Tensor) -> Tensor:
        """The map for the convolution output `h` (B, out, H, W): (1, out, H, W)."""
        pad = (self.weight.shape[-1] - 1) // 2
        border = border_indicator(h.shape[-2], h.shape[-1], pad, device=h.device, dtype=self.weight.dtype)
        return F.conv2d(border, self.weight)
