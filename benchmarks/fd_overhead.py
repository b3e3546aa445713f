"""Table 11 analog (Behrmann et al. 2021, appendix G): wall-clock overhead of the bi-directional
finite-difference regulariser applied every 1, 5 or 10 iterations, as time ratios against
unregularised training measured in the same process. As in the paper, every row trains with
memory-saving gradients, on an additive INN classifier with 1x1 convolutions (stable without
regularisation); one more row times ordinary backprop for reference.

The configurations are timed in interleaved rounds (each round runs every configuration for
`--steps` steps of Fashion-MNIST batches) so that load from other processes hits all of them
alike; the table gives the median seconds per step over rounds and its ratio to the
unregularised memory-saving row.

    PYTHONPATH=src python benchmarks/fd_overhead.py [--steps 20] [--rounds 3] [--batch 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from flowforge.data.images import load_image_split
from flowforge.experiments.gradient_angles import build_classifier, train_step

CONFIGS = {  # label: (regulariser, fd_every, memory_saving)
    "ordinary backprop, unregularised": ("none", 1, False),
    "memory-saving, unregularised": ("none", 1, True),
    "memory-saving, FD every 1": ("fd", 1, True),
    "memory-saving, FD every 5": ("fd", 5, True),
    "memory-saving, FD every 10": ("fd", 10, True),
}
BASELINE = "memory-saving, unregularised"


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="steps per configuration per round (a multiple of 10)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    train = load_image_split("fashion-mnist", "train", args.data_dir)
    models = {label: build_classifier("additive", reg, train.images[:512], fd_every=every)
              for label, (reg, every, _) in CONFIGS.items()}
    optimizers = {label: torch.optim.Adam(m.parameters(), lr=1e-4) for label, m in models.items()}
    seconds: dict[str, list[float]] = {label: [] for label in CONFIGS}
    step_of = dict.fromkeys(CONFIGS, 0)
    for round_ in range(args.rounds + 1):  # round 0 warms up and is not counted
        for label, (_, _, memory_saving) in CONFIGS.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                s = step_of[label]
                i = (s * args.batch) % (len(train.images) - args.batch)
                batch = (train.images[i:i + args.batch], train.labels[i:i + args.batch])
                train_step(models[label], optimizers[label], batch, s, memory_saving, torch.Generator().manual_seed(s))
                step_of[label] += 1
            if round_ > 0:
                seconds[label].append((time.perf_counter() - start) / args.steps)
        print(f"round {round_} done", flush=True)
    base = statistics.median(seconds[BASELINE])
    rows = [f"FD overhead, additive INN classifier (2 levels x 4 steps, hidden 32, 1x1 conv), batch {args.batch}, "
            f"median over {args.rounds} interleaved rounds of {args.steps} steps, CPU.", "",
            "| configuration | s / step | overhead vs memory-saving unregularised |", "|---|---|---|"]
    for label in CONFIGS:
        med = statistics.median(seconds[label])
        rows.append(f"| {label} | {med:.3f} | {med / base:.2f}x |")
    rows += ["", "Paper (table 11, CIFAR-10 GPU, per epoch): every 1: 3.04x, every 5: 1.45x, every 10: 1.26x."]
    table = "\n".join(rows)
    print(table)
    return table


if __name__ == "__main__":
    main()
