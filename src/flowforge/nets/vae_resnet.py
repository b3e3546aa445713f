"""Convolutional ResNet encoder and decoder of the VAE (Dai & Wipf 2019 style, as used by
Morrow & Chiu 2020, section 4.2: "the Resnet model ... with a depth of 3").

Encoder: conv3x3 -> 2 x [depth residual blocks -> strided conv (channels x2, size /2)] ->
dense head giving the mean and log-std of the diagonal Gaussian q(z|x).
Decoder: dense -> (4 * channels, H/4, W/4) -> 2 x [depth residual blocks -> transposed conv
(channels /2, size x2)] -> conv3x3 head giving the pixel mean (sigmoid, shifted to the model
space [-0.5, 0.5) as Dai & Wipf's sigmoid output on [0, 1]) and, for a per-pixel variance,
the pixel log-std. No batch normalisation: the likelihood of one example must not depend on
the rest of its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowforge.errors import ShapeError


class PlainResidualBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(relu(x))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _check_size(image_shape: Sequence[int]) -> tuple[int, int, int]:
    c, h, w = (int(s) for s in image_shape)
    if h % 4 or w % 4:
        raise ShapeError(f"the VAE ResNet halves the image size twice: H and W must be divisible by 4, got {h}x{w}")
    return c, h, w


class ConvEncoder(nn.Module):
    """Images (B, C, H, W) -> (mean, log_std) of q(z|x), each (B, latent_dim)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: int = 32, depth: int = 3):
        super().__init__()
        c, h, w = _check_size(image_shape)
        layers: list[nn.Module] = [nn.Conv2d(c, channels, 3, padding=1)]
        width = channels
        for _ in range(2):
            layers += [PlainResidualBlock(width) for _ in range(depth)]
            layers += [nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)]
            width *= 2
        layers += [nn.ReLU(), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width * (h // 4) * (w // 4), 2 * latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.head(self.body(x)).chunk(2, dim=1)
        return mean, log_std


class ConvDecoder(nn.Module):
    """z (B, latent_dim) -> pixel mean (B, C, H, W) in [-0.5, 0.5) and the pixel log-std (B, C, H, W)
    when `per_pixel_std`, else None (the model then holds one learned scalar, Dai & Wipf's gamma)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: int = 32, depth: int = 3,
                 per_pixel_std: bool = True):
        super().__init__()
        c, h, w = _check_size(image_shape)
        self.out_channels, self.per_pixel_std = c, per_pixel_std
        width = 4 * channels
        self.start_shape = (width, h // 4, w // 4)
        self.fc = nn.Linear(latent_dim, width * (h // 4) * (w // 4))
        layers: list[nn.Module] = []
        for _ in range(2):
            layers += [PlainResidualBlock(width) for _ in range(depth)]
            layers += [nn.ReLU(), nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1)]
            width //= 2
        layers += [nn.ReLU(), nn.Conv2d(width, c * (2 if per_pixel_std else 1), 3, padding=1)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.body(self.fc(z).view(z.shape[0], *self.start_shape))
        if self.per_pixel_std:
            logits, log_std = h.split(self.out_channels, dim=1)
            return torch.sigmoid(logits) - 0.5, log_std
        return torch.sigmoid(h) - 0.5, None
