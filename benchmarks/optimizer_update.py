"""The optimiser implementations behind `flowforge.training.make_optimizer`, measured on the
training step they serve: a 2-D MAF (4 MADE steps, hidden 64, benchmarks/peer_flows.py's
flowforge MAF) on batch 256, eager, the whole step (log-density, backward, update) timed.
Each optimiser in its per-tensor loop (torch's CPU default) and in the implementation
make_optimizer picks (Adam: fused, Adamax: foreach), each pair on its own copy of one flow,
interleaved round by round in one process; ratios are per-tensor / picked, median [min, max].

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/optimizer_update.py [--rounds 9] [--steps 100]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import peer_flows as pf
import torch

from flowforge.training.optimizers import OPTIMIZERS, make_optimizer
from flowforge.training.speed_auto import cpu_description


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--steps", type=int, default=100)
    a = p.parse_args()
    torch.manual_seed(0)
    _, flow = pf.build_flowforge("maf", 2, 0, 64, 4)
    x = torch.randn(256, 2)
    contenders = {}
    for name in OPTIMIZERS:
        for label in ("per-tensor", "picked"):
            f = copy.deepcopy(flow)
            opt = (OPTIMIZERS[name](f.parameters(), lr=1e-3, foreach=False) if label == "per-tensor"
                   else make_optimizer(name, f.parameters(), 1e-3))
            contenders[f"{name} {label}"] = (f, opt)

    def run(f, opt, steps):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = -f.log_prob(x).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (time.perf_counter() - t0) / steps

    times = {k: [] for k in contenders}
    for r in range(a.rounds + 1):
        for k, (f, opt) in contenders.items():
            t = run(f, opt, a.steps)
            if r:  # the first round warms up
                times[k].append(t)
    print(f"CPU: {cpu_description()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"{a.rounds} rounds of {a.steps} steps")
    for name in OPTIMIZERS:
        slow, fast = times[f"{name} per-tensor"], times[f"{name} picked"]
        ratios = [s / f for s, f in zip(slow, fast)]
        impl = {k: v for k, v in contenders[f"{name} picked"][1].param_groups[0].items() if k in ("fused", "foreach")}
        print(f"{name}: per-tensor {statistics.median(slow) * 1e3:.2f} ms/step, picked {impl} "
              f"{statistics.median(fast) * 1e3:.2f} ms/step: {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f}, {max(ratios):.2f}]")


if __name__ == "__main__":
    main()
