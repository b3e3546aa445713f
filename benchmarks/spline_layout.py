"""Why the rational-quadratic spline (bijections/rational_quadratic.py) computes with the bins as
the leading dimension: the reductions a spline needs over its K bins (softmax, cumsum, the bin
count) on an (elements, K) tensor, reduced over the short last dimension, against the same
numbers laid out (K, elements) and reduced over the leading one; forward + backward, one thread.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/spline_layout.py
"""

from __future__ import annotations

import statistics
import time

import torch


def _time(fn, reps: int = 300) -> float:
    """Median of 5 blocks of `reps` calls, microseconds per call."""
    for _ in range(20):
        fn()
    blocks = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        blocks.append((time.perf_counter() - start) / reps * 1e6)
    return statistics.median(blocks)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    bins = 8
    print(f"torch {torch.__version__}, 1 thread; K = {bins}; microseconds per call (forward + backward)")
    for elements in (512, 4096, 32768):
        last = torch.randn(elements, bins, requires_grad=True)
        lead = last.detach().t().contiguous().requires_grad_()
        values = torch.randn(elements)
        knots_last, knots_lead = last.detach().sort(-1).values, lead.detach().sort(0).values
        cases = {
            "softmax": (lambda: torch.softmax(last, -1).sum().backward(),
                        lambda: torch.softmax(lead, 0).sum().backward()),
            "cumsum": (lambda: torch.cumsum(last, -1).sum().backward(),
                       lambda: torch.cumsum(lead, 0).sum().backward()),
            "bin search": (lambda: torch.searchsorted(knots_last, values[:, None], right=True),
                           lambda: (knots_lead <= values).sum(0)),
        }
        for name, (on_last, on_lead) in cases.items():
            t_last, t_lead = _time(on_last), _time(on_lead)
            print(f"{elements:6d} elements  {name:10s}  (elements, K) over the last dim {t_last:8.1f}   "
                  f"(K, elements) over the leading dim {t_lead:8.1f}   ratio {t_last / t_lead:5.1f}x")


if __name__ == "__main__":
    main()
