"""Multi-scale RealNVP for images (Dinh et al. 2017, section 3.6; the schema of the LGF code,
NOTES b.8):

    logit -> ACL-cb(F) -> ACL-cb(T) -> ACL-cb(F) -> squeeze -> ACL-ch(T) -> ACL-ch(F) -> ACL-ch(T)
    -> split -> ACL-cb(F) -> ACL-cb(T) -> ACL-cb(F) -> ACL-cb(T)

(cb: checkerboard mask, ch: channel mask, T/F: inverted mask or not), each ACL followed by a
per-channel batch-normalisation flow (running averages in eval mode), ResNet coupling networks
of `blocks` x `hidden` channels, standard-normal densities for the factored-out half and the
rest (a `MultiScale` transform over a standard-normal base). The logit map reads the model space
[-0.5, 0.5) directly (its log-det included), so bits/dim are against the discrete data through the
same constant as every image model.

Context (docs/conditional-flows.md): with `context_dim` D > 0 every coupling's ResNet reads the
context vector c, shape (B, D), as D extra input channels (c broadcast over the positions,
`MaskedAffineCoupling`), and the density of the kept half is a diagonal Gaussian whose mean and
log-std are a zero-initialised linear map of c (`ConditionalDiagonalGaussian` with no hidden
layer; the factored-out half keeps N(0, I)). The logit, batch-norm and squeeze layers are the same
map for every c. A batch (images, context) trains p(x | c).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from flowforge.bijections import Chain, Squeeze
from flowforge.bijections.elementwise import BatchNormFlow, Logit
from flowforge.bijections.masked_coupling import MaskedAffineCoupling, channel_mask, checkerboard_mask
from flowforge.bijections.multiscale import FactorOut, MultiScale
from flowforge.distributions.concatenated import Concatenated
from flowforge.distributions.conditional_normal import ConditionalDiagonalGaussian
from flowforge.distributions.normal import StandardNormal
from flowforge.models.base import ImageFlowModel
from flowforge.models.registry import register
from flowforge.nets.resnet import ResNet


@register("realnvp")
class RealNVP(ImageFlowModel):
    LEGACY_KEYS = ((r"^first\.", "transform.levels.0."), (r"^second\.", "transform.levels.1."))

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), n_bits: int = 8, blocks: int = 4, hidden: int = 64,
                 logit_alpha: float = 1e-6, batch_norm: bool = True, context_dim: int = 0):
        super().__init__()
        self._set_image_shape(image_shape, n_bits)
        c, h, w = self.image_shape
        if h % 2 or w % 2:
            raise ValueError(f"RealNVP squeezes once: H and W must be even, got {h}x{w}")
        if context_dim < 0:
            raise ValueError(f"context_dim must be >= 0, got {context_dim}")
        self.context_dim = int(context_dim)

        def acl(mask: Tensor) -> list:
            net = ResNet(mask.shape[0] + context_dim, 2 * mask.shape[0], hidden, blocks)
            layer = [MaskedAffineCoupling(mask, net=net, context_dim=context_dim)]
            return layer + ([BatchNormFlow(mask.shape[0])] if batch_norm else [])

        first = [Logit(logit_alpha, scale=1.0, low=-0.5)]
        for invert in (False, True, False):
            first += acl(checkerboard_mask(c, h, w, invert))
        first.append(Squeeze())
        for invert in (True, False, True):
            first += acl(channel_mask(4 * c, h // 2, w // 2, invert))
        kept = (2 * c, h // 2, w // 2)
        second = []
        for invert in (False, True, False, True):
            second += acl(checkerboard_mask(kept[0], h // 2, w // 2, invert))
        transform = MultiScale([Chain(first), Chain(second)], [FactorOut(kept[0])], [kept, kept])
        top = ConditionalDiagonalGaussian(kept, context_dim, hidden=()) if context_dim else StandardNormal(kept)
        self._set_flow(transform, Concatenated([StandardNormal(kept), top]), self.image_shape)
