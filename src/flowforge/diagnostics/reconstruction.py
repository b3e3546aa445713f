"""Per-example reconstruction error ||x - F^-1(F(x))||_2 and its summary (Behrmann et al. 2021,
"Understanding and mitigating exploding inverses in invertible neural networks", section 4;
public code: per-sample norms over whole splits, NOTES d.3).

Non-finite errors (the inverse overflowed or produced NaN) are the finding, not noise: they are
kept in the per-example tensor and counted in the summary, never dropped.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowforge.diagnostics.maps import Map


@torch.no_grad()
def reconstruction_errors(forward: Map, inverse: Map, x: Tensor, batch_size: int = 256) -> Tensor:
    """(B,) float64 errors ||x - F^-1(F(x))||_2 per example (flattened), in chunks of `batch_size`;
    inf / NaN kept where the round trip breaks down."""
    if x.dim() < 2:
        raise ValueError(f"reconstruction_errors expects a batch (B, ...), got shape {tuple(x.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    errors = []
    for chunk in x.split(batch_size):
        rebuilt = inverse(forward(chunk))
        # the difference in float64: a float32 norm of large finite differences would overflow to inf
        diff = chunk.reshape(chunk.shape[0], -1).double() - rebuilt.reshape(chunk.shape[0], -1).double()
        errors.append(torch.linalg.vector_norm(diff, dim=1).cpu())
    return torch.cat(errors) if errors else torch.zeros(0, dtype=torch.float64)

def error_summary(errors: Tensor) -> dict:
    """Mean and max over the finite errors, and how many (and what share) are inf or NaN.
    `mean` / `max` are None when no error is finite."""
    errors = errors.detach().reshape(-1).double().cpu()
    finite = torch.isfinite(errors)
    n = errors.numel()
    kept = errors[finite]
    return {
        "examples": n,
        "mean": float(kept.mean()) if kept.numel() else None,
        "median": float(kept.median()) if kept.numel() else None,
        "max": float(kept.max()) if kept.numel() else None,
        "non_finite": int(n - finite.sum()),
        "nan": int(torch.isnan(errors).sum()),
        "inf": int(torch.isinf(errors).sum()),
        "share_non_finite": float((n - finite.sum()) / n) if n else None,
    }
