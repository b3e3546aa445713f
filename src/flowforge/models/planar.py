"""The variational-inference flow of Rezende & Mohamed 2015 ("Variational Inference with
Normalizing Flows", section 4.1): K planar (eq. 10) or radial (eq. 14) maps applied to a base draw,
z_K = f_K o ... o f_1(z_0), optionally with Householder reflections (Tomczak & Welling 2016)
between them, which rotate the directions the next map can bend.

The paper's maps run in the sampling direction, so each layer is `Inverse(Planar)` /
`Inverse(Radial)`: `sample`, `rsample` and `sample_and_log_prob` (the reverse-KL objective,
objectives/reverse_kl.py) apply the explicit maps in one pass, as in the paper; `log_prob` of given
points inverts each map (planar: bisection in float64; radial: closed form).

These layers have no conditioner: with ``context_dim > 0`` only the base is conditional (the
layers refuse a context given to them directly, `bijections.base.Unconditional`).
"""

from __future__ import annotations

from flowforge.bijections import Chain, Inverse, Unconditional
from flowforge.bijections.householder import Householder
from flowforge.bijections.planar import Planar
from flowforge.bijections.radial import Radial
from flowforge.models.flat import FlatFlowModel
from flowforge.models.registry import register

MAPS = {"planar": Planar, "radial": Radial}


@register("planar")
class PlanarFlow(FlatFlowModel):
    """`layers` maps of `kind` ("planar" or "radial"), `householder` reflections after each but the last."""

    CHOICES = {**FlatFlowModel.CHOICES, "kind": tuple(MAPS)}
    auto_compile_flow = False  # a variational family: trained by reverse KL through sampling

    def __init__(self, dim: int, layers: int = 16, kind: str = "planar", householder: int = 0,
                 context_dim: int = 0, base: str = "auto"):
        super().__init__(dim, context_dim, base)
        if kind not in MAPS:
            raise ValueError(f"kind must be one of {tuple(MAPS)}, got {kind!r}")
        if context_dim and self.base_kind == "standard":
            raise ValueError("planar / radial layers take no context: with context_dim > 0 the base must be "
                             'conditional (base="auto" or "conditional-gaussian")')
        # sampling applies f_1 first: in the data -> latent chain the last layer is f_1
        steps = []
        for i in range(layers):
            steps.append(Inverse(MAPS[kind](dim)))
            if householder and i < layers - 1:
                steps.append(Householder(dim, householder))
        chain = Chain(steps[::-1])
        self._set_transform(Unconditional(chain) if context_dim else chain)
