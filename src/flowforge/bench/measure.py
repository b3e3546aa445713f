"""Measuring tools: interleaved timing (robust on a shared machine), counted FLOPs, peak memory.

On a machine shared with other work, absolute times drift; ratios measured by interleaving
the contenders round by round (the order rotated each round) are far more stable. We report
the median over rounds and the spread (min and max).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_seconds(workloads: dict[str, Callable[[], None]], rounds: int, device: torch.device,
                        warmup: int = 1, progress=None) -> dict[str, list[float]]:
    """Seconds per call of each workload, `rounds` times, the contenders interleaved within each
    round and their order rotated between rounds; `warmup` untimed calls each first."""
    names = list(workloads)
    for name in names:
        for _ in range(warmup):
            workloads[name]()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            synchronize(device)
            start = time.perf_counter()
            workloads[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
        if progress is not None:
            progress.update(1)
    return times


@dataclass(frozen=True)
class Ratio:
    """Per-round ratio reference_time / contender_time (> 1: the contender is faster)."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, reference: list[float], contender: list[float]) -> "Ratio":
        ratios = [r / c for r, c in zip(reference, contender)]
        return cls(statistics.median(ratios), min(ratios), max(ratios), len(ratios))

    def __str__(self) -> str:
        return f"{self.median:.2f}x [{self.low:.2f}, {self.high:.2f}]"


def counted_flops(fn: Callable[[], None]) -> int:
    """FLOPs of the matrix multiplications and convolutions `fn` runs (forward and backward),
    as counted by torch.utils.flop_counter (elementwise work is not counted)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak_flops(dtype: torch.dtype, device: torch.device | str = "cpu", n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large square matmul in `dtype` on `device` (the best of `repeats` after one
    warm-up): the practical peak a training step's FLOP rate is compared with."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def peak_memory_bytes(fn: Callable[[], None], device: torch.device) -> int | None:
    """Peak device memory allocated while `fn` runs (CUDA only; None elsewhere)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))
