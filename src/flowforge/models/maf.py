"""Masked autoregressive flow (Papamakarios et al. 2017): `layers` MADE steps with the order
reversed between steps and, optionally, a batch-normalisation flow after each step (the MAF
paper's and the LGF code's baseline). With ``context_dim > 0`` every MADE reads the context
unmasked (MAF paper section 3.4, conditional MAF) and the base is conditional (`models/flat.py`)."""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.bijections import Chain, ReversePermutation
from flowforge.bijections.autoregressive import MAFStep
from flowforge.bijections.elementwise import BatchNormFlow
from flowforge.models.flat import FlatFlowModel
from flowforge.models.registry import register


@register("maf")
class MAF(FlatFlowModel):
    CHOICES = {**FlatFlowModel.CHOICES, "activation": ("tanh", "relu", "elu")}

    def __init__(self, dim: int, layers: int = 10, hidden: Sequence[int] = (50, 50), activation: str = "tanh",
                 batch_norm: bool = True, context_dim: int = 0, base: str = "auto"):
        super().__init__(dim, context_dim, base)
        steps = []
        for i in range(layers):
            steps.append(MAFStep(dim, list(hidden), activation=activation, context_dim=context_dim))
            if batch_norm:
                steps.append(BatchNormFlow(dim))
            if i < layers - 1:
                steps.append(ReversePermutation(dim))
        self._set_transform(Chain(steps))
