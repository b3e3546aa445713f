"""Reverse-KL training of a flow towards an unnormalised target (variational inference with
normalising flows, Rezende & Mohamed 2015, section 3 and eq. 15 / section 6.1):

    KL(q || p) = E_{x ~ q}[log q(x) - log p(x)] = E_q[log q(x) - log p~(x)] + log Z,

for p = p~ / Z. The loss is the Monte Carlo estimate over n reparameterised draws of q,

    L = (1/n) sum_i [log q(x_i) - beta log p~(x_i)],   x_i = f^{-1}(z_i),  z_i ~ base,

whose expectation at beta = 1 is KL(q || p) - log Z (an unbiased estimate of the KL up to the
constant log Z; its negative is the ELBO of log Z). Gradients flow through the draws (the
reparameterisation trick), so the flow needs `sample_and_log_prob` with reparameterised base
draws (every `Flow` has it); flows that sample in one pass (IAF, planar / radial in the sampling
direction, couplings) make each step cheap. `beta` < 1 is the paper's annealed target
beta log p~ (section 6.1: beta_t = min(1, 0.01 + t / 10000)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

LogDensity = Callable[[Tensor], Tensor]


def reverse_kl_terms(flow, log_density: LogDensity, n: int, context: Tensor | None = None,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(x, log q(x), log p~(x)) for n reparameterised draws x of `flow` (each (n,) but x)."""
    if n < 1:
        raise ValueError(f"reverse KL needs n >= 1 draws, got {n}")
    x, log_q = flow.sample_and_log_prob(n, context=context, generator=generator)
    log_p = log_density(x) if context is None else log_density(x, context)
    if log_p.shape != log_q.shape:
        raise ValueError(f"log_density must give one value per draw, shape {tuple(log_q.shape)}, "
                         f"got {tuple(log_p.shape)}")
    return x, log_q, log_p


def reverse_kl_loss(flow, log_density: LogDensity, n: int, beta: float = 1.0, context: Tensor | None = None,
                    generator: torch.Generator | None = None) -> Tensor:
    """Mean over n draws of log q(x) - beta log p~(x) (module docstring); `log_density` maps (n, ...)
    draws to (n,) values (and takes the context as a second argument when one is given)."""
    _, log_q, log_p = reverse_kl_terms(flow, log_density, n, context, generator)
    return (log_q - beta * log_p).mean()


def annealed_beta(step: int, start: float = 0.01, steps: int = 10000) -> float:
    """Rezende & Mohamed 2015, section 6.1: beta_t = min(1, start + t / steps)."""
    return min(1.0, start + step / steps)
