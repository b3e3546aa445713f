"""Neural spline flows for flat (B, D) data (Durkan et al. 2019, "Neural Spline Flows").

- `nsf`: rational-quadratic spline couplings (section 3.2, coupling transform) with the mask
  alternating between the two halves of the features and a reversal permutation after every
  coupling, so every feature is transformed and conditioned on in turn (the paper's couplings
  with permutations between them; we use fixed reversals instead of random permutations or LU
  layers, for reproducible Jacobian structure). Conditioner: a ReLU MLP of the identity half,
  with the context concatenated when ``context_dim > 0``.
- `nsf-ar`: autoregressive rational-quadratic steps (section 3.2, autoregressive transform; a
  MADE conditioner, the MAF scheme), with the order reversed between steps.

Outside [-bound, bound] the splines are the identity (linear tails, section 3.1). Zero-initialised
output layers make a fresh flow the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.bijections import Chain, ReversePermutation
from flowforge.bijections.spline_autoregressive import SplineAutoregressive
from flowforge.bijections.spline_coupling import SplineCoupling, half_mask
from flowforge.models.flat import FlatFlowModel
from flowforge.models.registry import register
from flowforge.nets.mlp import MLP


@register("nsf")
class NSF(FlatFlowModel):
    """`layers` spline couplings (K = `bins`, tails beyond +-`bound`), each followed by a reversal."""

    def __init__(self, dim: int, layers: int = 5, hidden: Sequence[int] = (64, 64), bins: int = 8,
                 bound: float = 3.0, context_dim: int = 0, base: str = "auto"):
        super().__init__(dim, context_dim, base)
        if dim < 2:
            raise ValueError("a coupling flow needs at least 2 dimensions; use nsf-ar for 1-D data")
        hidden = tuple(hidden)

        def net(n_in: int, n_out: int) -> MLP:
            return MLP(n_in, n_out, hidden, "relu")

        steps = []
        for i in range(layers):
            steps.append(SplineCoupling(half_mask(dim, invert=i % 2 == 1), net, bins=bins, bound=bound,
                                        context_dim=context_dim))
            if i < layers - 1:
                steps.append(ReversePermutation(dim))
        self._set_transform(Chain(steps))


@register("nsf-ar")
class NSFAutoregressive(FlatFlowModel):
    """`layers` autoregressive spline steps (MADE of `hidden` widths), the order reversed between steps."""

    CHOICES = {**FlatFlowModel.CHOICES, "activation": ("tanh", "relu", "elu")}

    def __init__(self, dim: int, layers: int = 5, hidden: Sequence[int] = (64, 64), bins: int = 8,
                 bound: float = 3.0, activation: str = "relu", context_dim: int = 0, base: str = "auto"):
        super().__init__(dim, context_dim, base)
        steps = []
        for i in range(layers):
            steps.append(SplineAutoregressive(dim, list(hidden), bins=bins, bound=bound, context_dim=context_dim,
                                              activation=activation))
            if i < layers - 1:
                steps.append(ReversePermutation(dim))
        self._set_transform(Chain(steps))
