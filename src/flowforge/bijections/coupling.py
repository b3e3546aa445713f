"""Affine and additive coupling layers (RealNVP, Dinh et al. 2017; Glow section 3.3).

The input is split along channels into x_a (first half, passed through) and x_b (second half).
A network of x_a (and, optionally, the context) gives h.

- Additive:  y_b = x_b + h;                                  log|det| = 0
- Affine (shift then scale, as the public Glow code):
             shift = h[:, 0::2], scale = s(h[:, 1::2])
             y_b = (x_b + shift) * scale;                    log|det| = sum(log scale)
  where s is one of `scale_functions.SCALE_FUNCTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection, zero_logdet
from flowforge.bijections.scale_functions import get_scale_function
from flowforge.errors import ShapeError

NetFactory = Callable[[int, int], nn.Module]
"""Builds the coupling network from (in_channels, out_channels)."""


class _Coupling(Bijection):
    def __init__(self, num_channels: int, net_factory: NetFactory, out_per_channel: int):
        super().__init__()
        if num_channels < 2:
            raise ValueError(f"coupling needs at least 2 channels, got {num_channels}")
        self.num_channels = num_channels
        self.split = num_channels // 2
        self.net = net_factory(self.split, (num_channels - self.split) * out_per_channel)

    def _halves(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() < 2 or x.shape[1] != self.num_channels:
            raise ShapeError(
                f"{type(self).__name__}({self.num_channels}) expects (B, {self.num_channels}, ...), "
                f"got {tuple(x.shape)}"
            )
        return x[:, : self.split], x[:, self.split :]

    def _net(self, x_a: Tensor, context: Tensor | None) -> Tensor:
        return self.net(x_a) if context is None else self.net(x_a, context)


class AdditiveCoupling(_Coupling):
    """y_b = x_b + t(x_a); volume preserving (NICE / Glow's additive option)."""

    def __init__(self, num_channels: int, net_factory: NetFactory):
        super().__init__(num_channels, net_factory, out_per_channel=1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = self._halves(x)
        y_b = x_b + self._net(x_a, context).to(x.dtype)
        return torch.cat([x_a, y_b], dim=1), zero_logdet(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z_a, z_b = self._halves(z)
        x_b = z_b - self._net(z_a, context).to(z.dtype)
        return torch.cat([z_a, x_b], dim=1), zero_logdet(z)


class AffineCoupling(_Coupling):
    """y_b = (x_b + shift(x_a)) * scale(x_a) with a selectable scale function (default Glow's sigmoid)."""

    def __init__(self, num_channels: int, net_factory: NetFactory, scale: str = "sigmoid"):
        super().__init__(num_channels, net_factory, out_per_channel=2)
        self.scale_name = scale
        self.scale_fn = get_scale_function(scale)

    def _shift_scale(self, x_a: Tensor, context: Tensor | None, dtype: torch.dtype):
        h = self._net(x_a, context).to(dtype)
        scale, log_scale = self.scale_fn(h[:, 1::2])
        return h[:, 0::2], scale, log_scale

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = self._halves(x)
        shift, scale, log_scale = self._shift_scale(x_a, context, x.dtype)
        y_b = (x_b + shift) * scale
        return torch.cat([x_a, y_b], dim=1), log_scale.flatten(1).sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z_a, z_b = self._halves(z)
        shift, scale, log_scale = self._shift_scale(z_a, context, z.dtype)
        x_b = z_b / scale - shift
        return torch.cat([z_a, x_b], dim=1), -log_scale.flatten(1).sum(1)
