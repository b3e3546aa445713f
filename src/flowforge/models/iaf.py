"""Inverse autoregressive flow (Kingma et al. 2016, "Improved Variational Inference with Inverse
Autoregressive Flow", section 4, eqs. 10-11): the MAF step used in the sampling direction
(Papamakarios et al. 2017, section 3.2 on the MAF / IAF duality).

Each step is `Inverse(MAFStep)`: sampling (latent -> data) is the MAF step's one-pass forward,
    x = z * exp(-alpha(z)) + mu(z),   mu, alpha autoregressive in z (a MADE),
which is IAF's  x = z * sigma(z) + m(z)  with sigma = exp(-alpha), m = mu (a checkpoint from
before the MAF step's shift moved after its scale keeps m = -mu exp(-alpha)). So
`sample`, `rsample` and `sample_and_log_prob` (reverse-KL / variational inference) take one MADE
pass per step, while `log_prob` of given data inverts each step in D passes. The order is reversed
between steps; with ``context_dim > 0`` every MADE reads the context (and the base is conditional).
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.bijections import Chain, Inverse, ReversePermutation
from flowforge.bijections.autoregressive import MAFStep
from flowforge.models.flat import FlatFlowModel
from flowforge.models.registry import register


@register("iaf")
class IAF(FlatFlowModel):
    """`layers` IAF steps with MADE conditioners of `hidden` widths."""

    CHOICES = {**FlatFlowModel.CHOICES, "activation": ("tanh", "relu", "elu")}
    auto_compile_flow = False  # log_prob inverts D autoregressive passes one after another

    def __init__(self, dim: int, layers: int = 5, hidden: Sequence[int] = (64, 64), activation: str = "tanh",
                 context_dim: int = 0, base: str = "auto"):
        super().__init__(dim, context_dim, base)
        steps = []
        for i in range(layers):
            steps.append(Inverse(MAFStep(dim, list(hidden), activation=activation, context_dim=context_dim)))
            if i < layers - 1:
                steps.append(ReversePermutation(dim))
        self._set_transform(Chain(steps))
