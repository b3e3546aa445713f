"""Repeated encode/decode drift: x_k = F^-1(F(x_{k-1})) for k = 1..passes (the public code does
9 passes, NOTES d.3, `glow/recon_mnist.py`), measuring after each pass how far x_k is from x:
mean absolute pixel difference (PAD, in 0-255 pixel units for images in model space
[-0.5, 0.5)), per-pixel MSE, and how many examples have become non-finite (counted, and left
out of the means, which are over the finite examples only)."""

from __future__ import annotations

import torch
from torch import Tensor

from flowforge.diagnostics.maps import Map

PUBLIC_CODE_PASSES = 9


@torch.no_grad()
def encode_decode_drift(forward: Map, inverse: Map, x: Tensor, passes: int = PUBLIC_CODE_PASSES,
                        pixel_scale: float = 255.0) -> list[dict]:
    """One dict per pass: `pass`, `pad` (mean |x - x_k| x pixel_scale), `mse` (per pixel, model
    units), `max_abs` (model units) over the finite examples, and `non_finite` examples."""
    if passes < 1:
        raise ValueError(f"passes must be at least 1, got {passes}")
    original = x.reshape(x.shape[0], -1).double()
    current, rows = x, []
    for k in range(1, passes + 1):
        current = inverse(forward(current))
        diff = current.reshape(x.shape[0], -1).double() - original
        finite = torch.isfinite(diff).all(dim=1)
        kept = diff[finite]
        rows.append({
            "pass": k,
            "pad": float(kept.abs().mean() * pixel_scale) if kept.numel() else None,
            "mse": float(kept.pow(2).mean()) if kept.numel() else None,
            "max_abs": float(kept.abs().max()) if kept.numel() else None,
            "non_finite": int((~finite).sum()),
        })
    return rows
