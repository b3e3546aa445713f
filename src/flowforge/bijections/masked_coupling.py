"""RealNVP's affine coupling with a binary mask (Dinh et al. 2017, eq. 9):

    y = m * x + (1 - m) * ((x + t(m * x)) * exp(s(m * x))),     log|det| = sum((1 - m) * s)

(shift then scale, as the LGF code). The mask is a checkerboard or a channel split for images
(`checkerboard_mask`, `channel_mask`) and alternating dimensions for flat data (`alternating_mask`);
`invert=True` swaps the roles of the two halves.

`scale` names the map from the network's raw output h to (exp(s), s) (`scale_functions`): "exp"
(the default, s = h, as above) or a bounded one such as "sigmoid" / "squashed-sigmoid" (Behrmann
et al. 2021, section 5 and supplement C).

Context (conditional density estimation, as the conditioners of nflows and zuko): with
``context_dim > 0`` the conditioner reads ``concat(m * x, c)`` -- the context vector c of shape
(B, context_dim) appended to the masked input along dim 1 (for images broadcast over the
positions as extra channels) -- so s and t, and with them the map, depend on c; the log-det keeps
its form. The networks must then take D + context_dim inputs (channels). Built with
``context_dim = 0`` the coupling refuses a context (ValueError) instead of ignoring it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.bijections.context import append_context, context_vector
from flowforge.bijections.scale_functions import get_scale_function
from flowforge.errors import ShapeError


def checkerboard_mask(channels: int, height: int, width: int, invert: bool = False) -> Tensor:
    """1 where (i + j) is odd (the LGF code's convention), for every channel."""
    i, j = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    mask = ((i + j) % 2 == 1).float().expand(channels, height, width).clone()
    return 1 - mask if invert else mask


def channel_mask(channels: int, height: int, width: int, invert: bool = False) -> Tensor:
    """1 on the first half of the channels."""
    mask = torch.zeros(channels, height, width)
    mask[: channels // 2] = 1
    return 1 - mask if invert else mask


def alternating_mask(dim: int, invert: bool = False) -> Tensor:
    """1 on even coordinates of a flat vector."""
    mask = (torch.arange(dim) % 2 == 0).float()
    return 1 - mask if invert else mask


class MaskedAffineCoupling(Bijection):
    """Affine coupling through a mask. `shift_net` and `log_scale_net` map the masked input to
    tensors of the input's shape; pass one `net` instead to get both as the halves of its output
    along dim 1 (shift first, as the LGF code's ChunkedSharedCoupler). With ``context_dim > 0`` the
networks read the masked input with the context concatenated (module docstring)."""

    def __init__(self, mask: Tensor, net: nn.Module | None = None, shift_net: nn.Module | None = None,
                 log_scale_net: nn.Module | None = None, scale: str = "exp", context_dim: int = 0):
        super().__init__()
        if (net is None) == (shift_net is None or log_scale_net is None):
            raise ValueError("give either `net` or both `shift_net` and `log_scale_net`")
        self.register_buffer("mask", mask.float())
        self.net, self.shift_net, self.log_scale_net = net, shift_net, log_scale_net
        self.scale, self._scale_fn = scale, get_scale_function(scale)
        if context_dim < 0:
            raise ValueError(f"context_dim must be >= 0, got {context_dim}")
        self.context_dim = int(context_dim)

    def _conditioner_input(self, x_masked: Tensor, context: Tensor | None) -> Tensor:
        return append_context(x_masked, context_vector(self, context, self.context_dim, x_masked.shape[0]))

    def _shift_log_scale(self, x_masked: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_masked = self._conditioner_input(x_masked, context)
        if self.net is not None:
            shift, log_scale = self.net(x_masked).chunk(2, dim=1)
        else:
            shift, log_scale = self.shift_net(x_masked), self.log_scale_net(x_masked)
        free = 1 - self.mask
        return shift * free, self._scale_fn(log_scale)[1] * free

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != tuple(self.mask.shape):
            raise ShapeError(f"MaskedAffineCoupling expects (B, {', '.join(map(str, self.mask.shape))}), "
                             f"got {tuple(x.shape)}")

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        shift, log_scale = self._shift_log_scale(x * self.mask, context)
        y = (x + shift) * log_scale.exp()
        return y, log_scale.flatten(1).sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z)
        shift, log_scale = self._shift_log_scale(z * self.mask, context)
        x = z * (-log_scale).exp() - shift
        return x, -log_scale.flatten(1).sum(1)
