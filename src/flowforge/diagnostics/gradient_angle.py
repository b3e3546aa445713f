"""Angle between the memory-saving gradient and the true gradient (Behrmann et al. 2021, figure 1
and appendix G figure 18; public code `classification/compute_gradient_angles.py`, NOTES d.4).

Memory-saving backprop (`flowforge.bijections.memory_saving`) rebuilds every layer's input with the
layer's inverse; where the inverse is unstable the rebuilt activations, and so the gradient, are
wrong. The angle between the two gradients (all parameters flattened into one vector) measures
how wrong. Differences from the public code, on purpose: degrees instead of radians, no 1e-8 added
to every component (it biases the angle of small gradients), and a non-finite memory-saving
gradient gives angle NaN *and* `finite = False`, so callers count such batches instead of
averaging over them unknowingly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.bijections.memory_saving import memory_saving_forward


def flat_gradient(grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    """All gradients as one float64 vector (a missing gradient counts as zeros)."""
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).double() for g, p in zip(grads, params)])


def angle_degrees(a: Tensor, b: Tensor) -> float:
    """Angle between vectors a and b in degrees; NaN if either is non-finite or zero."""
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return math.nan
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return math.nan
    cos = torch.clamp(torch.dot(a, b) / (na * nb), -1.0, 1.0)
    return math.degrees(float(torch.arccos(cos)))


def gradient_angle(true_loss: Callable[[], Tensor], memory_saving_loss: Callable[[], Tensor],
                   params: Sequence[nn.Parameter]) -> dict:
    """Compare the gradients of two scalar losses that compute the same value, one by ordinary
    backprop and one through memory-saving backprop, over `params`.

    Returns {"angle_deg", "relative_error" = ‖g_mem − g_true‖ / ‖g_true‖, "true_norm",
    "memory_saving_norm", "finite" (whether the memory-saving gradient is finite)}."""
    params = list(params)
    g_true = flat_gradient(torch.autograd.grad(true_loss(), params, allow_unused=True), params)
    g_mem = flat_gradient(torch.autograd.grad(memory_saving_loss(), params, allow_unused=True), params)
    finite = bool(torch.isfinite(g_mem).all())
    true_norm = float(g_true.norm())
    rel = float((g_mem - g_true).norm() / true_norm) if finite and true_norm > 0 else math.nan
    return {"angle_deg": angle_degrees(g_true, g_mem), "relative_error": rel, "true_norm": true_norm,
            "memory_saving_norm": float(g_mem.norm()) if finite else math.nan, "finite": finite}


def chain_gradient_angle(chain: Bijection, x: Tensor, loss_of_output: Callable[[Tensor, Tensor], Tensor],
                         context: Tensor | None = None, params: Sequence[nn.Parameter] | None = None) -> dict:
    """`gradient_angle` for a chain of invertible layers: the loss is `loss_of_output(z, logabsdet)`
    with (z, logabsdet) from the chain by ordinary and by memory-saving backprop. `params` default
    to the chain's; pass more (e.g. a head after the chain) to include them."""
    params = [p for p in (chain.parameters() if params is None else params) if p.requires_grad]
    return gradient_angle(lambda: loss_of_output(*chain(x, context=context)),
                          lambda: loss_of_output(*memory_saving_forward(chain, x, context)), params)


__all__ = ["angle_degrees", "chain_gradient_angle", "flat_gradient", "gradient_angle"]
