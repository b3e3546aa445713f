"""Neural spline flows for flat (B, D) data (Durkan et al. 2019, "Neural Spline Flows").

- `nsf`: rational-quadratic spline couplings (section 3.2, coupling transform), each transforming
  the second half of the features conditioned on the first, with a reversal permutation between
  couplings, so every feature is transformed and conditioned on in turn (the paper's couplings
  with permutations between them; we use fixed reversals instead of random permutations or LU
  layers, for reproducible Jacobian structure). An alternating mask together with the reversal
  would cancel it (the same features transformed by every coupling, the others never): versions
  before 2026-12-02 did that; their checkpoints load with the masks they were trained with (the
  coupling's index buffers), so they give the densities they were trained to give. Conditioner: a ReLU MLP of the identity half,
  with the context concatenated when ``context_dim > 0``. With ``elementwise=True`` each coupling
  also transforms its conditioning half, by a spline of learned constants (`SplineCoupling`'s
  ``identity_spline``), as zuko's two-pass NSF does: with 600 Adam steps of
  benchmarks/peer_flows.py, mean test NLL of 3 seeds 49.23 against 49.70 nats on digits, no
  difference on checkerboard (2.0456 against 2.0446; `benchmarks/flat_flow_variants.py`).
- `nsf-ar`: autoregressive rational-quadratic steps (section 3.2, autoregressive transform; a
  MADE conditioner, the MAF scheme), with the order reversed between steps.

Outside [-bound, bound] the splines are the identity (linear tails, section 3.1). Zero-initialised
output layers make a fresh flow the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

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
                 bound: float = 3.0, context_dim: int = 0, base: str = "auto", elementwise: bool = False):
        super().__init__(dim, context_dim, base)
        if dim < 2:
            raise ValueError("a coupling flow needs at least 2 dimensions; use nsf-ar for 1-D data")
        self._spline = {"bins": bins, "bound": bound, "context_dim": context_dim, "identity_spline": elementwise}
        self._hidden = tuple(hidden)
        steps = []
        for i in range(layers):
            steps.append(self._coupling(half_mask(dim)))
            if i < layers - 1:
                steps.append(ReversePermutation(dim))
        self._set_transform(Chain(steps))

    def _coupling(self, mask: torch.Tensor) -> SplineCoupling:
        return SplineCoupling(mask, lambda n_in, n_out: MLP(n_in, n_out, self._hidden, "relu"), **self._spline)

    def upgrade_state_dict(self, state):
        """A checkpoint of the earlier alternating masks (module docstring): each coupling whose
        stored mask differs is rebuilt with it, so the checkpoint loads and gives its own densities."""
        state = super().upgrade_state_dict(state)
        for k, step in enumerate(self.transform.layers):
            stored = state.get(f"transform.layers.{k}.identity_index")
            if isinstance(step, SplineCoupling) and stored is not None and not torch.equal(stored, step.identity_index):
                mask = torch.zeros(self.dim)
                mask[stored.long()] = 1
                self.transform.layers[k] = self._coupling(mask).to(step.identity_index.device)
        return state


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
