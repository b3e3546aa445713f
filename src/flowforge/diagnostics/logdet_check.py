"""|numerical - analytic log-det| on small inputs (Behrmann et al. 2021, appendix; public code
`glow/analyze.py`, NOTES d.3): the analytic log|det J_F| a model reports, against slogdet of the
full autograd Jacobian of F computed in float64 on a float64 copy of the model."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.diagnostics.jacobian import full_jacobian
from flowforge.diagnostics.maps import invertible_map


def analytic_logdet(model_or_bijection: nn.Module, x: Tensor) -> Tensor:
    """(B,) log|det J_F(x)| as the model computes it: a Bijection's (or a Flow's `transform`)
    forward log-det, or the summed log-det of a multi-scale model's `_forward` (Glow, RealNVP:
    squeezes and splits are volume preserving)."""
    obj = model_or_bijection
    flow = getattr(obj, "transform", None)
    if not isinstance(obj, Bijection) and isinstance(flow, Bijection):
        obj = flow
    if isinstance(obj, Bijection):
        return obj(x)[1]
    if hasattr(obj, "logabsdet"):
        return obj.logabsdet(x)
    if hasattr(obj, "_forward"):
        try:
            out = obj._forward(x, None)
        except TypeError:
            out = obj._forward(x)
        return out[1]
    raise TypeError(f"{type(obj).__name__} exposes no analytic log-det (a Bijection, a `flow`, `logabsdet(x)` "
                    "or `_forward(x) -> (latents, logdet, ...)`)")


def logdet_errors(model_or_bijection: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Per-example analytic and numerical log|det J_F| and their absolute difference, all in
    float64 (the model is copied, not changed). Costs one backward pass per input dimension:
    for small inputs. A non-finite Jacobian gives a NaN numerical value (kept)."""
    model = copy.deepcopy(model_or_bijection).double().eval()
    x = x.detach().double()
    forward, _ = invertible_map(model)
    jac = full_jacobian(forward, x)
    numerical = torch.full((x.shape[0],), float("nan"), dtype=torch.float64)
    finite = torch.isfinite(jac).flatten(1).all(dim=1)
    if finite.any():
        numerical[finite] = torch.linalg.slogdet(jac[finite])[1]
    with torch.no_grad():
        analytic = analytic_logdet(model, x).double().cpu()
    return {"analytic": analytic, "numerical": numerical, "abs_error": (numerical - analytic).abs()}
