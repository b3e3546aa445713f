"""Zero-initialised output layers with a learned gain exp(3 * logs) (the public Glow code's
`conv2d_zeros` / `linear_zeros`): a layer built on them starts as the identity or a constant."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowforge.nets.edge_bias import EdgeBias

LOGSCALE_FACTOR = 3.0


class ZeroConv2d(nn.Module):
    """Convolution with zero-initialised weight and bias, output times exp(3 * logs) per channel;
    `edge_bias`: with the public code's border channel (nets/edge_bias.py), also zero-initialised."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, edge_bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.edge = EdgeBias(out_channels, kernel_size, std=0.0) if edge_bias and kernel_size > 1 else None
        self.logs = nn.Parameter(torch.zeros(out_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        if self.edge is not None:
            h = h + self.edge(h)
        return h * (self.logs * LOGSCALE_FACTOR).exp()


class LinearZeros(nn.Module):
    """Linear layer with zero-initialised weight and bias, output times exp(3 * logs)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.logs = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) * (self.logs * LOGSCALE_FACTOR).exp()
