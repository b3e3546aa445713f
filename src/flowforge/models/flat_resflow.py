"""Residual flow for flat (B, D) data — 2-D toy sets and tabular data (Chen et al. 2019, Residual
Flows, section 6.1; the reference `train_toy.py`): `blocks` residual blocks, each g an MLP of
spectrally normalised linear layers with LipSwish (`hidden` widths, Lipschitz coefficient
`coeff`), an ActNorm after every block, a standard-normal base.

log p(x): in training mode the log-det of each block is the unbiased Russian-roulette estimate
(`n_exact_terms` exact terms + Geometric / Poisson roulette, Neumann-series gradient), so the
training loss is an unbiased estimate of the NLL. In eval mode (validation, test, density
grids) it is computed as set by `eval_logdet`: "exact" (default) is brute force — the D x D
Jacobian of every block — and exact; "estimator" uses the estimator with 20 exact terms.
The inverse (sampling, decoding) is the blocks' fixed-point inverse (`bijections.residual`),
refined in exact (eval) mode by `newton_steps` Newton steps (0: the plain fixed point).
With ``context_dim > 0`` only the base is conditional (the residual blocks refuse a context).
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.bijections import ActNorm, Chain, Unconditional
from flowforge.bijections.residual import LOGDET_MODES, ResidualBlock
from flowforge.bijections.residual_logdet import N_DISTRIBUTIONS
from flowforge.models.flat import FlatFlowModel
from flowforge.models.registry import register
from flowforge.nets.lipschitz import lipschitz_mlp


@register("flat-resflow")
class FlatResFlow(FlatFlowModel):
    CHOICES = {**FlatFlowModel.CHOICES, "logdet": LOGDET_MODES, "eval_logdet": LOGDET_MODES, "n_dist": N_DISTRIBUTIONS}
    auto_compile_flow = False  # a random number of power-series terms per step: not measured compiled

    def __init__(self, dim: int, blocks: int = 10, hidden: Sequence[int] = (128, 128), coeff: float = 0.98,
                 actnorm: bool = True, logdet: str = "estimator", eval_logdet: str = "exact", n_exact_terms: int = 2,
                 n_dist: str = "geometric", inverse_atol: float = 1e-5, inverse_rtol: float = 1e-5,
                 newton_steps: int = 2, context_dim: int = 0, base: str = "auto"):
        super().__init__(dim, context_dim, base)
        if context_dim and self.base_kind == "standard":
            raise ValueError("residual blocks take no context: with context_dim > 0 the base must be conditional "
                             '(base="auto" or "conditional-gaussian")')
        steps = []
        for _ in range(blocks):
            steps.append(ResidualBlock(lipschitz_mlp(dim, tuple(hidden), coeff), (dim,), logdet=logdet,
                                       eval_logdet=eval_logdet, n_exact_terms=n_exact_terms, n_dist=n_dist,
                                       inverse_atol=inverse_atol, inverse_rtol=inverse_rtol,
                                       newton_steps=newton_steps))
            if actnorm:
                steps.append(ActNorm(dim))
        # residual blocks have no context input: a conditional model conditions only its base
        self._set_transform(Unconditional(Chain(steps)) if context_dim else Chain(steps))
        self.log_prob_kind = "exact" if eval_logdet == "exact" else "roulette-estimate"
