"""normflows' Glow with flowforge's Glow architecture, for like-for-like benchmarks.

Built as normflows' own Glow example (`examples/glow.ipynb`): per level K `GlowBlock`s then a
`Squeeze`, a `Merge` between levels, a `GlowBase` prior per level, wrapped in `MultiscaleFlow`.
Matched to `flowforge.models.glow.Glow(levels=L, depth=K, hidden=H)`:

- the same K, L, hidden width, affine coupling with the sigmoid scale, LU 1x1 convolution,
  channel split, and coupling network conv3x3 -> actnorm -> ReLU -> conv1x1 -> actnorm -> ReLU
  -> zero-init conv3x3 (`net_actnorm=True`);
- unavoidable difference: normflows' factored-out latents get an unconditional learned
  Gaussian (`GlowBase`), flowforge's a Gaussian conditioned on the kept half through one
  zero-init 3x3 convolution (Glow's `split2d`); that convolution is < 1 % of the FLOPs.
  normflows' output convolution has a bias and no exp(3 * logs) gain (a per-channel multiply).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowforge.errors import MissingDependencyError
from flowforge.objectives.bits_per_dim import bits_per_dim


def require_normflows():
    try:
        import normflows
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("the normflows benchmarks need normflows, the optional extra: "
                                     "pip install 'flowforge[bench]'") from err
    return normflows


def build_normflows_glow(image_shape: Sequence[int], levels: int, depth: int, hidden: int) -> nn.Module:
    """normflows' MultiscaleFlow Glow over (C, H, W) images in [-0.5, 0.5)."""
    nf = require_normflows()
    c0, h0, w0 = image_shape
    flows, merges, priors = [], [], []
    for i in range(levels):  # i = 0 is the top (coarsest) level, as in normflows' example
        channels = c0 * 2 ** (levels + 1 - i)
        steps = [nf.flows.GlowBlock(channels, hidden, split_mode="channel", scale=True, scale_map="sigmoid",
                                    net_actnorm=True, use_lu=True) for _ in range(depth)]
        flows.append(steps + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            shape = (c0 * 2 ** (levels - i), h0 // 2 ** (levels - i), w0 // 2 ** (levels - i))
        else:
            shape = (c0 * 2 ** (levels + 1), h0 // 2**levels, w0 // 2**levels)
        priors.append(nf.distributions.GlowBase(shape))
    return nf.MultiscaleFlow(priors, flows, merges, class_cond=False)


def normflows_bits_per_dim(model: nn.Module, x: Tensor, n_bits: int = 8) -> Tensor:
    """Mean bits/dim of dequantised model-space x, the same objective flowforge trains."""
    return bits_per_dim(model.log_prob(x, None), x[0].numel(), n_bits).mean()


@torch.no_grad()
def initialize_normflows(model: nn.Module, x: Tensor) -> None:
    """normflows initialises every actnorm on the first batch it sees: run that batch once."""
    model.log_prob(x, None)
