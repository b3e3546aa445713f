"""RealNVP for flat data (Dinh et al. 2017; the LGF code's flat baseline): affine couplings with
alternating masks, a tanh MLP for the log-scale and a ReLU MLP for the shift, and optionally a
batch-normalisation flow after each coupling. `scale` picks the scale function applied to the
log-scale network's output (`bijections.scale_functions`; "exp" is RealNVP's exp(s)). With
``context_dim > 0`` both networks read the masked input with the context concatenated
(`MaskedAffineCoupling`) and the base is conditional (`models/flat.py`)."""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.bijections import Chain
from flowforge.bijections.elementwise import BatchNormFlow
from flowforge.bijections.masked_coupling import MaskedAffineCoupling, alternating_mask
from flowforge.bijections.scale_functions import SCALE_FUNCTIONS
from flowforge.models.flat import FlatFlowModel
from flowforge.models.registry import register
from flowforge.nets.mlp import MLP


@register("flat-realnvp")
class FlatRealNVP(FlatFlowModel):
    CHOICES = {**FlatFlowModel.CHOICES, "scale": tuple(SCALE_FUNCTIONS)}

    def __init__(self, dim: int, layers: int = 10, hidden: Sequence[int] = (100, 100), batch_norm: bool = True,
                 scale: str = "exp", context_dim: int = 0, base: str = "auto"):
        super().__init__(dim, context_dim, base)
        if dim < 2:
            raise ValueError("a coupling flow needs at least 2 dimensions")
        steps = []
        for i in range(layers):
            mask = alternating_mask(dim, invert=i % 2 == 1)
            n_in = dim + context_dim
            steps.append(MaskedAffineCoupling(mask, shift_net=MLP(n_in, dim, hidden, "relu"),
                                              log_scale_net=MLP(n_in, dim, hidden, "tanh"), scale=scale,
                                              context_dim=context_dim))
            if batch_norm:
                steps.append(BatchNormFlow(dim))
        self._set_transform(Chain(steps))
