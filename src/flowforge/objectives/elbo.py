"""The per-layer ELBO of localised generative flows (LGF paper §3.3, algorithm 1; NOTES b.2).

A `LocalisedStep` is one index variable u_l with its indexed bijection G_l and its densities
p(u_l | z_{l-1}) and q(u_l | z_l). It sits in a `Chain` of ordinary bijections (after each
coupling / MADE layer of the base flow) and keeps the Chain's interface:

    forward(x)  (data -> latent): u ~ q(u | x) (reparameterised), z = G(x; u),
                returns (z, log|det D_x G(x; u)| + log p(u | z) - log q(u | x))
    inverse(z)  (latent -> data): u ~ p(u | z), returns (G^{-1}(z; u), log|det|)

so the Chain's summed "log-det" is the sum of algorithm 1's Delta_l terms plus the ordinary
layers' log-dets, and base log-density + that sum is a one-sample ELBO of log p(x) (its
expectation is L(x) <= log p(x)). NB (NOTES b.2): q conditions on the layer's input, p on its
output. The step is stochastic: it is not a bijection of x alone, and the contract test covers
its `IndexedAffine` for fixed u instead.

Noise: a step draws from the generator set by `noise_source(model, generator)` (the trainer's
per-step generator, the evaluation's seeded one), else from torch's global generator.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.bijections.conditional import IndexedAffine
from flowforge.distributions.conditional_gaussian import ConditionalDiagGaussian


class LocalisedStep(Bijection):
    """u_l, G_l(.; u_l), p(u_l | z_{l-1}) (conditioned on the output) and q(u_l | z_l) (on the input)."""

    def __init__(self, bijection: IndexedAffine, prior: ConditionalDiagGaussian,
                 posterior: ConditionalDiagGaussian):
        super().__init__()
        self.bijection, self.prior, self.posterior = bijection, prior, posterior
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u, log_q = self.posterior.rsample(x, generator=self.generator)
        z, logdet = self.bijection(x, context=u)
        return z, logdet + self.prior.log_prob(u, z) - log_q

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u, _ = self.prior.rsample(z, generator=self.generator)
        return self.bijection.inverse(z, context=u)


def localised_steps(model: nn.Module) -> list[LocalisedStep]:
    return [m for m in model.modules() if isinstance(m, LocalisedStep)]


@contextmanager
def noise_source(model: nn.Module, generator: torch.Generator | None) -> Iterator[None]:
    """Make every LocalisedStep of `model` draw its u from `generator` inside the block."""
    steps = localised_steps(model)
    saved = [s.generator for s in steps]
    for s in steps:
        s.generator = generator
    try:
        yield
    finally:
        for s, g in zip(steps, saved):
            s.generator = g


def insert_after(layers: list[nn.Module], kind: type | tuple[type, ...], make) -> list[nn.Module]:
    """`layers` with `make(layer)` inserted after every layer of type `kind` (LGF paper §5: u after
    every coupling / MADE layer of the base flow)."""
    out: list[nn.Module] = []
    for layer in layers:
        out.append(layer)
        if isinstance(layer, kind):
            out.append(make(layer))
    return out
