"""A small DCGAN-style image discriminator (Radford et al. 2016) as used by the Flow-GAN outlook
of Behrmann et al. 2021 (supplement H): strided 3x3 convolutions with LeakyReLU(0.2), each under
spectral normalisation (Miyato et al. 2018), then one linear logit. The paper's has 7 convolutions
of widths (64, 64, 128, 128, 256, 256, 512); the default here is a CPU-sized 4 of
(32, 64, 64, 128), alternating stride 1 and 2 like the paper's pairs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class Discriminator(nn.Module):
    """(B, C, H, W) images -> (B,) logits of "real"."""

    def __init__(self, in_channels: int = 1, size: int = 28, widths: Sequence[int] = (32, 64, 64, 128),
                 spectral: bool = True, slope: float = 0.2):
        super().__init__()
        if not widths:
            raise ValueError("Discriminator needs at least one convolution width")
        wrap = spectral_norm if spectral else (lambda m: m)
        layers, c, s = [], in_channels, size
        for i, width in enumerate(widths):
            stride = 2 if i % 2 else 1
            layers += [wrap(nn.Conv2d(c, width, 3, stride=stride, padding=1)), nn.LeakyReLU(slope)]
            c, s = width, (s + 2 - 3) // stride + 1
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.out = wrap(nn.Linear(c * s * s, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x)).squeeze(1)
