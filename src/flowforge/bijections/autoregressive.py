"""Masked autoregressive flow step (MAF, Papamakarios et al. 2017, section 3.1, eqs. 3-5).

A MADE of x gives a shift mu(x) and a log-scale alpha(x), entry i depending only on the entries
of smaller degree (see `flowforge.nets.made`). Then

    forward  (data -> noise, one pass):      z = x * exp(-alpha(x)) + mu(x),    log|det| = -sum(alpha)
    inverse  (noise -> data, D passes):      x_i = (z_i - mu_i) * exp(alpha_i), log|det| = +sum(alpha)

The shift is added after the scaling, as zuko's MAF does; the MAF paper's own form
z = (x - mu) * exp(-alpha) is the same family of maps, but couples the effective shift
-mu * exp(-alpha) to the scale, and trained worse: with 600 Adam steps (the protocol of
benchmarks/peer_flows.py, 3 seeds, `benchmarks/flat_flow_variants.py`) test NLL 2.164 against
2.202 nats on checkerboard and 1.956 against 1.989 on two-moons; `shift_after_scale=False` builds
the paper's form. A step loaded from a checkpoint written before this change (no
`shift_after_scale` entry) keeps the paper's form, so it gives its own densities.

alpha is raw (unbounded), as in MAF and the LGF/CIF code (NOTES b.4: linear output, no
squashing); the MADE's zero-initialised output layer makes a fresh step the identity.

Order between steps: as the LGF/CIF code's `flip`, put a `ReversePermutation(dim)` between
successive steps and keep ``reverse_order=False`` (the convention `models/maf.py` should follow).
``reverse_order=True`` reverses the MADE's own degree order instead: alternating it gives the
same family of models without the permutation layers. Do not combine the two (they cancel).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowforge.bijections.base import Bijection
from flowforge.errors import ShapeError
from flowforge.nets.made import MADE


class MAFStep(Bijection):
    """One MAF layer on (B, dim) inputs; optional context is fed to the MADE unmasked."""

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        activation: str = "tanh",
        reverse_order: bool = False,
        context_dim: int = 0,
        shift_after_scale: bool = True,
    ):
        super().__init__()
        self.dim = dim
        self.made = MADE(
            dim,
            hidden,
            out_multiplier=2,
            activation=activation,
            order="reverse" if reverse_order else "forward",
            context_dim=context_dim,
        )
        # True: z = x * exp(-alpha) + mu; False (the paper's form, checkpoints from before): z = (x - mu) * exp(-alpha)
        self.register_buffer("shift_after_scale", torch.tensor(shift_after_scale))
        self._shift_after_scale = shift_after_scale

    def upgrade_state(self, state: dict[str, Tensor], prefix: str) -> None:
        """A state dict written before the shift moved after the scale has no `shift_after_scale`:
        add it as False (the paper's form), so the step computes what was trained."""
        state.setdefault(prefix + "shift_after_scale", torch.tensor(False))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.upgrade_state(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._shift_after_scale = bool(self.shift_after_scale)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"MAFStep({self.dim}) expects (B, {self.dim}), got {tuple(x.shape)}")

    def _shift_log_scale(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.made(x, context).to(x.dtype)
        return h[:, : self.dim], h[:, self.dim :]

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        mu, alpha = self._shift_log_scale(x, context)
        if self._shift_after_scale:
            return x * (-alpha).exp() + mu, -alpha.sum(1)
        return (x - mu) * (-alpha).exp(), -alpha.sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """D passes of the MADE: after pass t every entry of degree <= t is exact, because its
        mu and alpha read only entries of smaller degree. The last pass's alpha is exact too."""
        self._check(z)
        x = z.clone()
        alpha = z.new_zeros(z.shape)
        for _ in range(self.dim):
            mu, alpha = self._shift_log_scale(x, context)
            x = (z - mu) * alpha.exp() if self._shift_after_scale else z * alpha.exp() + mu
        return x, alpha.sum(1)
