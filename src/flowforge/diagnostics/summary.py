"""Summaries of per-example diagnostic values that keep count of the non-finite ones."""

from __future__ import annotations

import torch
from torch import Tensor


def finite_stats(values: Tensor) -> dict:
    """min / median / max over the finite values, and how many are not finite (None where no
    value is finite)."""
    v = values.detach().reshape(-1).double().cpu()
    kept = v[torch.isfinite(v)]
    has = kept.numel() > 0
    return {
        "n": v.numel(),
        "min": float(kept.min()) if has else None,
        "median": float(kept.median()) if has else None,
        "max": float(kept.max()) if has else None,
        "non_finite": int(v.numel() - kept.numel()),
    }
