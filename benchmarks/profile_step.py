"""Where one Glow training step spends its time: torch.profiler over the benchmark's own step
(`flowforge bench train-throughput`'s flowforge contender), ops grouped by self CPU time.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/profile_step.py [VARIANT] [--steps N] [--batch B]

VARIANT is a bench variant (default bf16+channels-last; a compiled variant shows inductor's
kernels as opaque graph calls). Prints the top ops and a summary by kind: convolutions (forward
and backward), matmuls, the optimizer, and everything else.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from flowforge.bench.suite import BenchSettings, _images, flowforge_contender

KINDS = (
    ("convolution", ("conv",)),
    ("matmul", ("mm", "addmm", "bmm", "linear", "matmul")),
    ("optimizer", ("adamax", "foreach", "_fused")),
)


def kind_of(name: str) -> str:
    lowered = name.lower()
    for kind, keys in KINDS:
        if any(k in lowered for k in keys):
            return kind
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", nargs="?", default="bf16+channels-last")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    s = BenchSettings(depth=args.depth, hidden=args.hidden)
    contender = flowforge_contender(s, args.variant, _images(s, 256))
    images = _images(s, args.batch)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):  # warm-up (and compilation for compiled variants)
        contender.train_step(images, gen)
    start = time.perf_counter()
    for _ in range(args.steps):
        contender.train_step(images, gen)
    unprofiled = (time.perf_counter() - start) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            contender.train_step(images, gen)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    print(f"variant {args.variant}, batch {args.batch}, {torch.get_num_threads()} thread(s): "
          f"{unprofiled:.3f} s/step unprofiled, {total / 1e6 / args.steps:.3f} s/step profiled")
    by_kind: dict[str, float] = {}
    for e in events:
        kind = kind_of(e.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + e.self_cpu_time_total
    for kind, t in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:12s} {t / total:6.1%}  {t / 1e6 / args.steps:.3f} s/step")
    print(f"\ntop {args.top} ops by self CPU time (per step):")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        print(f"  {e.self_cpu_time_total / total:6.1%} {e.self_cpu_time_total / 1e3 / args.steps:9.2f} ms "
              f"{e.count // args.steps:5d} calls  {e.key}")


if __name__ == "__main__":
    main()
