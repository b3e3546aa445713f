"""Glow's split prior as a bijection (Glow section 3; the public code's `split2d`, whose encoder
returns eps for every split): the factored-out half z_out is mapped, given the kept half, to
eps = (z_out - mean(z_kept)) * exp(-logs(z_kept)), a conditional affine map with
log|det| = -sum(logs). Under a standard-normal eps this is exactly the learned conditional
Gaussian p(z_out | z_kept) = N(mean, exp(logs)^2); `temperature` on eps is Glow's temperature.

With `context_dim` D > 0 the prior is also conditioned on a context vector c of shape (B, D): a
zero-initialised linear map of c (per channel, shared by the positions) is added to mean and
logs, as Glow's class-conditional `ycond` adds one of the one-hot label to the top prior's."""

from __future__ import annotations

from torch import Tensor, nn

from flowforge.bijections.context import context_vector
from flowforge.nets.zero_init import LinearZeros, ZeroConv2d


class SplitPrior(nn.Module):
    """(mean, logs) = interleaved channels of a zero-initialised 3x3 convolution of the kept half
    (starts as N(0, I)); `edge_bias`: with the public code's border channel (nets/edge_bias.py);
    `context_dim` > 0: plus a zero-initialised linear map of the context (module docstring)."""

    def __init__(self, kept_channels: int, out_channels: int, edge_bias: bool = False, context_dim: int = 0):
        super().__init__()
        self.conv = ZeroConv2d(kept_channels, 2 * out_channels, edge_bias=edge_bias)
        self.context_dim = int(context_dim)
        self.context_map = LinearZeros(self.context_dim, 2 * out_channels) if self.context_dim > 0 else None

    def params(self, z_kept: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.conv(z_kept)
        c = context_vector(self, context, self.context_dim, z_kept.shape[0])
        if c is not None:
            h = h + self.context_map(c.to(h.dtype))[:, :, None, None]
        return h[:, 0::2], h[:, 1::2]

    def standardise(self, z_out: Tensor, z_kept: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(eps, log|det|) of z_out -> eps."""
        mean, logs = self.params(z_kept, context)
        logs = logs.to(z_out.dtype)
        return (z_out - mean.to(z_out.dtype)) * (-logs).exp(), -logs.flatten(1).sum(1)

    def unstandardise(self, eps: Tensor, z_kept: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(z_out, log|det|) of eps -> z_out = mean + exp(logs) * eps."""
        mean, logs = self.params(z_kept, context)
        return mean + logs.exp() * eps, logs.flatten(1).sum(1)
