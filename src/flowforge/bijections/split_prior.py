"""Glow's split prior as a bijection (Glow section 3; the public code's `split2d`, whose encoder
returns eps for every split): the factored-out half z_out is mapped, given the kept half, to
eps = (z_out - mean(z_kept)) * exp(-logs(z_kept)), a conditional affine map with
log|det| = -sum(logs). Under a standard-normal eps this is exactly the learned conditional
Gaussian p(z_out | z_kept) = N(mean, exp(logs)^2); `temperature` on eps is Glow's temperature."""

from __future__ import annotations

from torch import Tensor, nn

from flowforge.nets.zero_init import ZeroConv2d


class SplitPrior(nn.Module):
    """(mean, logs) = interleaved channels of a zero-initialised 3x3 convolution of the kept half
    (starts as N(0, I)); `edge_bias`: with the public code's border channel (nets/edge_bias.py)."""

    def __init__(self, kept_channels: int, out_channels: int, edge_bias: bool = False):
        super().__init__()
        self.conv = ZeroConv2d(kept_channels, 2 * out_channels, edge_bias=edge_bias)

    def params(self, z_kept: Tensor) -> tuple[Tensor, Tensor]:
        h = self.conv(z_kept)
        return h[:, 0::2], h[:, 1::2]

    def standardise(self, z_out: Tensor, z_kept: Tensor) -> tuple[Tensor, Tensor]:
        """(eps, log|det|) of z_out -> eps."""
        mean, logs = self.params(z_kept)
        logs = logs.to(z_out.dtype)
        return (z_out - mean.to(z_out.dtype)) * (-logs).exp(), -logs.flatten(1).sum(1)

    def unstandardise(self, eps: Tensor, z_kept: Tensor) -> tuple[Tensor, Tensor]:
        """(z_out, log|det|) of eps -> z_out = mean + exp(logs) * eps."""
        mean, logs = self.params(z_kept)
        return mean + logs.exp() * eps, logs.flatten(1).sum(1)
