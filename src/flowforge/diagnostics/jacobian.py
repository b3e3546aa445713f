"""Jacobian spectra of F and F^-1: exact singular values for small inputs, and power-iteration
estimates of sigma_max and sigma_min for full images (Behrmann et al. 2021, section 3: the
bi-Lipschitz constants Lip(F) = sup sigma_max(J_F), Lip(F^-1) = sup 1 / sigma_min(J_F); their
public code takes the SVD of the full autograd Jacobian of one sample, NOTES d.3).

Every function assumes the map treats the examples of a batch independently (put models with
batch statistics in eval mode), so one backward pass of a batch gives every example's
vector-Jacobian product at once and the batched Jacobian is block-diagonal.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowforge.diagnostics.maps import Map

EXACT_MAX_DIM = 128  # above this many input dimensions the exact SVD is replaced by power iteration


def _flat_output(fn: Map, x: Tensor) -> Tensor:
    y = fn(x)
    return y.reshape(y.shape[0], -1)


def full_jacobian(fn: Map, x: Tensor) -> Tensor:
    """(B, D_out, D_in) Jacobian of fn at every example of x, one backward pass per output
    coordinate for the whole batch (examples independent)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = _flat_output(fn, x)
        rows = []
        for i in range(y.shape[1]):
            (g,) = torch.autograd.grad(y[:, i].sum(), x, retain_graph=i + 1 < y.shape[1], allow_unused=True)
            rows.append(torch.zeros_like(x) if g is None else g)
    return torch.stack([r.reshape(x.shape[0], -1) for r in rows], dim=1).detach()


def jacobian_singular_values(fn: Map, x: Tensor) -> Tensor:
    """(B, min(D_out, D_in)) singular values of the Jacobian of fn at each example, descending;
    exact (autograd Jacobian + SVD), so for small inputs. NaN rows where the Jacobian is not finite."""
    jac = full_jacobian(fn, x)
    out = torch.full(jac.shape[:1] + (min(jac.shape[1:]),), float("nan"), dtype=jac.dtype)
    finite = torch.isfinite(jac).flatten(1).all(dim=1)
    if finite.any():
        out[finite] = torch.linalg.svdvals(jac[finite]).to(out.dtype)
    return out


def _per_example_norm(v: Tensor) -> Tensor:
    return torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=1)


def _normalise(v: Tensor) -> Tensor:
    return v / _per_example_norm(v).clamp_min(1e-30).reshape(-1, *([1] * (v.dim() - 1)))


def largest_singular_value(fn: Map, x: Tensor, iters: int = 20, generator: torch.Generator | None = None) -> Tensor:
    """(B,) power-iteration estimate of sigma_max(J_fn(x)) per example: v <- J^T J v / ||J^T J v||,
    sigma = ||J v||. One forward pass; J v by the double-backward trick (J v = d/du <J^T u, v>),
    J^T u by a vector-Jacobian product. The estimate is a lower bound that increases towards
    sigma_max; its accuracy depends on the gap to the second singular value."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = _flat_output(fn, x)
        u = torch.zeros_like(y, requires_grad=True)
        (jt_u,) = torch.autograd.grad(y, x, u, create_graph=True)  # J^T u, linear in u
        v = _normalise(torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device))
        sigma = torch.zeros(x.shape[0], dtype=y.dtype, device=y.device)
        for _ in range(max(1, iters)):
            (jv,) = torch.autograd.grad(jt_u, u, v, retain_graph=True)
            sigma = _per_example_norm(jv)
            (jtjv,) = torch.autograd.grad(y, x, jv, retain_graph=True)
            v = _normalise(jtjv)
    return sigma.detach()


def singular_value_extremes(forward: Map, inverse: Map, x: Tensor, iters: int = 20, exact: bool | None = None,
                            generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Per-example sigma_max, sigma_min and condition = sigma_max / sigma_min of J_F at x.

    exact (default: when x has at most EXACT_MAX_DIM dimensions per example): from the SVD of the
    full Jacobian. Otherwise power iteration: sigma_max on J_F at x, and sigma_min = 1 / sigma_max
    of J_{F^-1} at F(x) (= J_F(x)^-1 for an exact inverse). For F^-1, swap the maps and pass F(x).
    """
    if exact is None:
        exact = x[0].numel() <= EXACT_MAX_DIM
    if exact:
        s = jacobian_singular_values(forward, x)
        sigma_max, sigma_min = s[:, 0], s[:, -1]
    else:
        sigma_max = largest_singular_value(forward, x, iters, generator)
        with torch.no_grad():
            z = forward(x)
        sigma_min = 1.0 / largest_singular_value(inverse, z, iters, generator)
    return {"sigma_max": sigma_max, "sigma_min": sigma_min, "condition": sigma_max / sigma_min}
