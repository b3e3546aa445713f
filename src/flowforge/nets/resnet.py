"""The convolutional ResNet of the RealNVP / LGF code (`get_resnet`, NOTES b.4):

    conv3x3 (no bias) -> blocks x [BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, + skip]
    -> BN -> ReLU -> conv1x1 (bias) -> w * tanh(.)   (learned per-channel w, init 1)

`zero_init=True` starts the conv1x1's weight and bias at zero, so the network's output is 0 at
initialisation (as the zero-initialised last convolution of the CIF code's Glow networks, NOTES b.3);
gradients still reach the conv1x1 at once (tanh'(0) = 1, w = 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ScaledTanh(nn.Module):
    """w * tanh(x) with a learned weight per channel (dim 1), initialised to 1."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight.view(1, -1, *([1] * (x.dim() - 2))) * torch.tanh(x)


class ResNet(nn.Module):
    """RealNVP's coupling network from `in_channels` to `out_channels` with `blocks` residual
    blocks of `hidden` channels."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64, blocks: int = 4,
                 zero_init: bool = False):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            *[ResidualBlock(hidden) for _ in range(blocks)],
            nn.BatchNorm2d(hidden), nn.ReLU(), nn.Conv2d(hidden, out_channels, 1),
            ScaledTanh(out_channels),
        )
        if zero_init:
            nn.init.zeros_(self.net[-2].weight)
            nn.init.zeros_(self.net[-2].bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
