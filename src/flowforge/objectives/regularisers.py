"""Stability regularisers for invertible networks (Behrmann et al. 2021, "Understanding and
mitigating exploding inverses in invertible neural networks", section 3.2 eq. 6 and appendix G).

Bi-directional finite differences (FD). With F the data -> latent map, z = F(x), and unit
directions d (data space) and d' (latent space),

    R_fwd = ‖F(x + ε d) − z‖² / ε          R_inv = ‖F⁻¹(z + ε d') − x‖² / ε

summed over the mini-batch (the public code's Frobenius norm over the whole batch; NOTES d.1).
Since F(x + εd) − F(x) ≈ ε J d, R ≈ ε ‖J d‖² (and ε ‖J⁻¹ d'‖²): a stochastic estimate of the
scaled squared Frobenius norms of the Jacobians of F and F⁻¹. The paper uses ε = 0.1 (to avoid
catastrophic cancellation) and weights λ_f = λ_i = 1e-4, applied every K-th iteration.

Difference from the public code, on purpose: each example's direction has unit norm. The public
code divides d by the norm of each *coordinate across the batch* (dim=0), which makes each
example's direction norm about sqrt(D / B) instead of 1, so its λ does not mean the same thing
for another D or B. The inverse term here also passes its full gradient (through F⁻¹ and through
z = F(x)); in the public code's ordinary-backprop path it gives none (x_δ is computed under
no_grad), it only acts through its memory-saving path.

Normalising-flow (NF) regulariser: c · NLL(x) added to a model trained on another objective
(classification, regression) — appendix G / F, coefficients 1e-5 ... 1e-8.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowforge.errors import ShapeError

FD_EPSILON = 0.1
"""Finite-difference step ε of the paper (appendix G, 'Finite Differences Regularization')."""
FD_WEIGHT = 1e-4
"""λ_f = λ_i of the paper's runs (public README: fd_coeff = fd_inv_coeff = 1e-4)."""

MapFn = Callable[[Tensor], Tensor]


def unit_directions(shape: tuple[int, ...] | torch.Size, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian directions of `shape` (batch first), each example's direction of unit ℓ2 norm."""
    d = torch.randn(tuple(shape), generator=generator, device=like.device, dtype=like.dtype)
    flat = d.reshape(d.shape[0], -1)
    return (flat / flat.norm(dim=1, keepdim=True)).reshape(d.shape)


def due(step: int, every: int) -> bool:
    """True on the iterations where a regulariser applied 'every K iterations' runs (K <= 0: never)."""
    return every > 0 and step % every == 0


def finite_difference_terms(
    forward: MapFn,
    inverse: MapFn,
    x: Tensor,
    eps: float = FD_EPSILON,
    z: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The two FD terms, unweighted: {"forward": R_fwd, "inverse": R_inv} (scalars summed over
    the batch). `forward` maps a batch (B, ...) to flat latents (B, D), `inverse` maps them back
    (e.g. `flowforge.diagnostics.maps.invertible_map`). Pass `z = forward(x)` if already computed
    so F(x) is not run twice; its graph then carries the inverse term's gradient into F."""
    if eps <= 0:
        raise ValueError(f"finite-difference step eps must be positive, got {eps}")
    if z is None:
        z = forward(x)
    if z.dim() != 2 or z.shape[0] != x.shape[0]:
        raise ShapeError(f"forward must map (B, ...) to flat latents (B, D); got {tuple(x.shape)} -> {tuple(z.shape)}")
    d = unit_directions(x.shape, x, generator)
    z_delta = forward(x + eps * d)
    r_fwd = (z_delta - z).pow(2).sum() / eps
    d_latent = unit_directions(z.shape, z, generator)
    x_delta = inverse(z + eps * d_latent)
    if x_delta.shape != x.shape:
        raise ShapeError(f"inverse must map latents back to the data shape {tuple(x.shape)}, got {tuple(x_delta.shape)}")
    r_inv = (x_delta - x).pow(2).sum() / eps
    return {"forward": r_fwd, "inverse": r_inv}


def finite_difference_penalty(
    forward: MapFn,
    inverse: MapFn,
    x: Tensor,
    eps: float = FD_EPSILON,
    forward_weight: float = 1.0,
    inverse_weight: float = 1.0,
    z: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Bi-directional FD regulariser λ_f R_fwd + λ_i R_inv (eq. 6), a scalar summed over the batch.

    The weights default to 1 so the caller scales by its λ (paper: `FD_WEIGHT` = 1e-4); see
    `finite_difference_terms` for the arguments. Per-example unit directions (module docstring)."""
    terms = finite_difference_terms(forward, inverse, x, eps=eps, z=z, generator=generator)
    return forward_weight * terms["forward"] + inverse_weight * terms["inverse"]


def flow_nll_penalty(log_prob_fn: Callable[[Tensor], Tensor], x: Tensor, coefficient: float) -> Tensor:
    """Normalising-flow regulariser c · mean NLL(x) = −c · mean log p(x) (appendix F/G; public
    code `loss += -nf_coeff * objective.mean()`). `log_prob_fn` returns per-example log-densities
    in nats. A non-finite value is returned as is: the trainer skips such steps, never hides them."""
    log_p = log_prob_fn(x)
    if log_p.dim() != 1 or log_p.shape[0] != x.shape[0]:
        raise ShapeError(f"log_prob_fn must return per-example log-densities ({x.shape[0]},), got {tuple(log_p.shape)}")
    return -coefficient * log_p.mean()


__all__ = ["FD_EPSILON", "FD_WEIGHT", "due", "finite_difference_penalty", "finite_difference_terms",
           "flow_nll_penalty", "unit_directions"]
