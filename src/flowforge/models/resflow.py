"""Multi-scale residual flow for images (Chen et al. 2019, Residual Flows, section 6; NOTES d.7):

    logit -> [ResidualBlock -> ActNorm] x blocks -> squeeze -> [ResidualBlock -> ActNorm] x blocks
    -> squeeze -> ...   (`scales` scales, no factor-out, as the reference's default)

Each g is LipSwish -> SN conv3x3(C -> hidden) -> LipSwish -> SN conv1x1 -> LipSwish -> SN
conv3x3(hidden -> C) with Lipschitz coefficient `coeff` (0.98); the spectral norms of the 3x3
convolutions are the l2 operator norms on the scale's image size. The logit map reads the
model space [-0.5, 0.5) (alpha 1e-6 as the reference's MNIST setting), so bits/dim are against
the discrete data as for every image model. The base is a standard normal on the last scale's
tensor; `encode` returns that one latent.

log p(x) is NOT exact: every block's log-det is the unbiased Russian-roulette estimate — in
training with `n_exact_terms` exact terms (Neumann-series gradient), in eval mode (validation,
test bits/dim) with `eval_exact_terms` (20) exact terms, as the reference's evaluation. Reported
bits/dim are therefore unbiased estimates with extra (small) variance from the estimator;
`eval_logdet="exact"` (brute force, D backward passes per block) is only sensible for tiny images.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.bijections import ActNorm, Chain, Squeeze
from flowforge.bijections.elementwise import Logit
from flowforge.bijections.residual import LOGDET_MODES, ResidualBlock
from flowforge.bijections.residual_logdet import N_DISTRIBUTIONS
from flowforge.distributions.normal import StandardNormal
from flowforge.models.base import ImageFlowModel
from flowforge.models.registry import register
from flowforge.nets.lipschitz import lipschitz_conv_net


@register("resflow")
class ResFlow(ImageFlowModel):
    LEGACY_KEYS = ((r"^flow\.", "transform."),)
    CHOICES = {"eval_logdet": LOGDET_MODES, "n_dist": N_DISTRIBUTIONS}

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), n_bits: int = 8, scales: int = 2, blocks: int = 4,
                 hidden: int = 64, coeff: float = 0.98, logit_alpha: float = 1e-6, n_exact_terms: int = 2,
                 eval_exact_terms: int = 20, n_dist: str = "geometric", eval_logdet: str = "estimator",
                 inverse_atol: float = 1e-5, inverse_rtol: float = 1e-5, inverse_max_iter: int = 1000):
        super().__init__()
        self._set_image_shape(image_shape, n_bits)
        c, h, w = self.image_shape
        if scales < 1 or blocks < 1:
            raise ValueError(f"need scales >= 1 and blocks >= 1, got {scales}, {blocks}")
        if h % 2 ** (scales - 1) or w % 2 ** (scales - 1):
            raise ValueError(f"{scales} scales squeeze {scales - 1} times: H and W must be divisible by "
                             f"{2 ** (scales - 1)}, got {h}x{w}")
        layers = [Logit(logit_alpha, scale=1.0, low=-0.5)]
        for s in range(scales):
            if s:
                layers.append(Squeeze())
                c, h, w = 4 * c, h // 2, w // 2
            for _ in range(blocks):
                layers.append(ResidualBlock(
                    lipschitz_conv_net(c, hidden, (h, w), coeff), (c, h, w), logdet="estimator",
                    eval_logdet=eval_logdet, n_exact_terms=n_exact_terms, eval_exact_terms=eval_exact_terms,
                    n_dist=n_dist, inverse_atol=inverse_atol, inverse_rtol=inverse_rtol,
                    inverse_max_iter=inverse_max_iter))
                layers.append(ActNorm(c))
        self.latent_shape = (c, h, w)
        self._set_flow(Chain(layers), StandardNormal(self.latent_shape), self.image_shape)
        self.log_prob_kind = "exact" if eval_logdet == "exact" else "roulette-estimate"
