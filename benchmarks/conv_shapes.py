"""Forward and backward speed of the convolution shapes of a Glow coupling network at the first
level of a 28x28 image (14x14 after the squeeze, batch 64), in float32 and bf16, NCHW and
channels-last: which of them the hardware runs fast and which it does not.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/conv_shapes.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

# (in channels, out channels, kernel, height = width): input conv (2 data + 1 edge channel),
# hidden 1x1, output conv, at hidden 128 and 256
SHAPES = [(3, 128, 3, 14), (128, 128, 1, 14), (128, 4, 3, 14), (256, 256, 1, 14), (3, 256, 3, 14), (256, 4, 3, 14)]


def time_conv(cin: int, cout: int, k: int, hw: int, dtype: torch.dtype, channels_last: bool,
              batch: int = 64, reps: int = 5) -> tuple[float, float, float]:
    """(forward s, backward s, FLOPs of the forward) of one convolution."""
    x = torch.randn(batch, cin, hw, hw, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.randn(cout, cin, k, k, dtype=dtype, requires_grad=True)
    for _ in range(2):
        y = F.conv2d(x, w, padding=k // 2)
        y.backward(torch.ones_like(y))
    start = time.perf_counter()
    for _ in range(reps):
        y = F.conv2d(x, w, padding=k // 2)
    forward = (time.perf_counter() - start) / reps
    grad = torch.ones_like(y)
    start = time.perf_counter()
    for _ in range(reps):
        F.conv2d(x, w, padding=k // 2).backward(grad)
    backward = (time.perf_counter() - start) / reps - forward
    return forward, backward, 2.0 * batch * hw * hw * cin * cout * k * k


def main() -> None:
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        for channels_last in (False, True):
            for cin, cout, k, hw in SHAPES:
                f, b, flop = time_conv(cin, cout, k, hw, dtype, channels_last)
                print(f"{cin:4d}->{cout:4d} k{k} {hw}x{hw} {str(dtype)[6:]:9s} cl={channels_last:d}: "
                      f"fwd {f * 1e3:7.2f} ms ({flop / f / 1e9:6.1f} GF/s) "
                      f"bwd {b * 1e3:7.2f} ms ({2 * flop / b / 1e9:6.1f} GF/s)")


if __name__ == "__main__":
    main()
