"""Multi-scale RealNVP for images (Dinh et al. 2017, section 3.6; the schema of the LGF code,
NOTES b.8):

    logit -> ACL-cb(F) -> ACL-cb(T) -> ACL-cb(F) -> squeeze -> ACL-ch(T) -> ACL-ch(F) -> ACL-ch(T)
    -> split -> ACL-cb(F) -> ACL-cb(T) -> ACL-cb(F) -> ACL-cb(T)

(cb: checkerboard mask, ch: channel mask, T/F: inverted mask or not), each ACL followed by a
per-channel batch-normalisation flow (running averages in eval mode), ResNet coupling networks
of `blocks` x `hidden` channels, standard-normal densities for the factored-out half and the
rest. The logit map reads the model space [-0.5, 0.5) directly (its log-det included), so bits/dim
are against the discrete data through the same constant as every image model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowforge.bijections import Chain, Squeeze
from flowforge.bijections.elementwise import BatchNormFlow, Logit
from flowforge.bijections.masked_coupling import MaskedAffineCoupling, channel_mask, checkerboard_mask
from flowforge.distributions.gaussian import diag_gaussian_log_prob
from flowforge.models.base import ImageFlowModel
from flowforge.models.registry import register
from flowforge.nets.resnet import ResNet


@register("realnvp")
class RealNVP(ImageFlowModel):
    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), n_bits: int = 8, blocks: int = 4, hidden: int = 64,
                 logit_alpha: float = 1e-6, batch_norm: bool = True):
        super().__init__()
        self._set_image_shape(image_shape, n_bits)
        c, h, w = self.image_shape
        if h % 2 or w % 2:
            raise ValueError(f"RealNVP squeezes once: H and W must be even, got {h}x{w}")

        def acl(mask: Tensor) -> list:
            layer = [MaskedAffineCoupling(mask, net=ResNet(mask.shape[0], 2 * mask.shape[0], hidden, blocks))]
            return layer + ([BatchNormFlow(mask.shape[0])] if batch_norm else [])

        first = [Logit(logit_alpha, scale=1.0, low=-0.5)]
        for invert in (False, True, False):
            first += acl(checkerboard_mask(c, h, w, invert))
        first.append(Squeeze())
        for invert in (True, False, True):
            first += acl(channel_mask(4 * c, h // 2, w // 2, invert))
        self.first = Chain(first)
        self.kept_channels = 2 * c
        second = []
        for invert in (False, True, False, True):
            second += acl(checkerboard_mask(self.kept_channels, h // 2, w // 2, invert))
        self.second = Chain(second)

    def _forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        self._check_input(x)
        z, ld1 = self.first(x)
        kept, out = z[:, : self.kept_channels], z[:, self.kept_channels :]
        top, ld2 = self.second(kept)
        return [out, top], ld1 + ld2

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        latents, logdet = self._forward(x)
        return logdet + sum(diag_gaussian_log_prob(z) for z in latents)

    def encode(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        return self._forward(x)[0]

    def decode(self, latents: list[Tensor], context: Tensor | None = None) -> Tensor:
        out, top = latents
        kept, _ = self.second.inverse(top)
        return self.first.inverse(torch.cat([kept, out], dim=1))[0]

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        p = next(self.parameters())
        c, h, w = self.image_shape
        shape = (n, 2 * c, h // 2, w // 2)
        latents = [torch.randn(shape, generator=generator, device=p.device) * float(temperature) for _ in range(2)]
        return self.decode(latents)

    def loss(self, batch, generator=None) -> dict[str, Tensor]:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        bpd = self.bits_per_dim(images, generator=generator).mean()
        return {"loss": bpd, "bpd": bpd.detach()}
