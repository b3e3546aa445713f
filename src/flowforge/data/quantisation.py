"""n-bit reduction, scaling to the model's space [-0.5, 0.5) and uniform dequantisation
(the public Glow code's `preprocess` / `postprocess`)."""

from __future__ import annotations

import torch
from torch import Tensor


def _check_bits(n_bits: int) -> int:
    if not 1 <= n_bits <= 8:
        raise ValueError(f"n_bits must be in 1..8, got {n_bits}")
    return 2**n_bits


def to_model_space(x: Tensor, n_bits: int = 8) -> Tensor:
    """uint8 images in [0, 255] -> floats k / 2^n - 0.5 for the n-bit value k (in [-0.5, 0.5))."""
    n_bins = _check_bits(n_bits)
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {x.dtype}")
    x = torch.div(x.float(), 2 ** (8 - n_bits), rounding_mode="floor")
    return x / n_bins - 0.5


def dequantise(x: Tensor, n_bits: int = 8, generator: torch.Generator | None = None) -> Tensor:
    """Add U(0, 1 / 2^n) noise so the model sees a density on each discrete value's cell."""
    n_bins = _check_bits(n_bits)
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    # x + noise / n_bins can round up onto the next cell's edge in float32: keep it inside
    upper = torch.nextafter(x + 1.0 / n_bins, x)
    return torch.minimum(x + noise / n_bins, upper)


def to_uint8(x: Tensor, n_bits: int = 8) -> Tensor:
    """Model-space values back to displayable uint8 images (n-bit values spread over 0..255)."""
    n_bins = _check_bits(n_bits)
    k = torch.floor((x + 0.5) * n_bins).clamp(0, n_bins - 1)
    return (k * (256 // n_bins)).to(torch.uint8)


def reduce_bits(x: Tensor, n_bits: int) -> Tensor:
    """uint8 images reduced to n bits and kept as uint8: each value v becomes k * 2^(8-n) with
    k = floor(v / 2^(8-n)) (`to_model_space` then `to_uint8`; 8 bits returns ``x`` unchanged).
    `to_model_space(reduce_bits(x, n), n)` equals `to_model_space(x, n)`."""
    _check_bits(n_bits)
    if n_bits == 8:
        return x
    return to_uint8(to_model_space(x, n_bits), n_bits)
