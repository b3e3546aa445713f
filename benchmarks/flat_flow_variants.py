"""Where the design choices behind flowforge's flat flows come from: test NLL of flowforge alone,
under the protocol of benchmarks/peer_flows.py (600 Adam steps, validation selection, the same
seeds), for the variants that were compared:

- MAF step: shift after the scale (z = x exp(-alpha) + mu, the default) against the paper's form
  z = (x - mu) exp(-alpha) (`MAFStep(shift_after_scale=False)`), checkerboard and two-moons;
- NSF coupling: with and without the identity-part spline (`SplineCoupling(identity_spline=...)`),
  checkerboard and digits; on digits the coupling at hidden 34 (zuko's matched width); and the
  conditioner's output layer zero-initialised (flowforge's MLP, the default) against torch's
  default initialisation.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/flat_flow_variants.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import peer_flows as pf
import torch

from flowforge.bijections.autoregressive import MAFStep
from flowforge.training.speed_auto import cpu_description


def maf_builder(shift_after_scale: bool):
    def build(model, dim, ctx, hidden, layers):
        return pf.flowforge_flow(lambda: MAFStep(dim, [hidden, hidden], activation="relu", context_dim=ctx,
                                                 shift_after_scale=shift_after_scale), dim, layers)
    return build


def coupling_builder(identity_spline: bool, zero_output: bool = True):
    """zero_output: flowforge's conditioner (output layer zero-initialised); else the same MLP
    with torch's default initialisation (what the peer benchmark gave flowforge before)."""
    def build(model, dim, ctx, hidden, layers):
        conditioner = pf.flowforge_conditioner if zero_output else pf.MLP
        return pf.flowforge_flow(lambda: pf.flowforge_coupling(dim, ctx, lambda i, o: conditioner(i, o, hidden),
                                                               identity_spline), dim, layers)
    return build


# (label, set, model, builder, hidden)
VARIANTS = [
    ("MAF, shift after the scale", "checkerboard", "maf", maf_builder(True), 64),
    ("MAF, paper's form", "checkerboard", "maf", maf_builder(False), 64),
    ("MAF, shift after the scale", "two-moons", "maf", maf_builder(True), 64),
    ("MAF, paper's form", "two-moons", "maf", maf_builder(False), 64),
    ("NSF coupling + identity spline", "checkerboard", "nsf-coupling", coupling_builder(True), 64),
    ("NSF coupling", "checkerboard", "nsf-coupling", coupling_builder(False), 64),
    ("NSF coupling + identity spline", "digits", "nsf-coupling", coupling_builder(True), 64),
    ("NSF coupling", "digits", "nsf-coupling", coupling_builder(False), 64),
    ("NSF coupling + identity spline, hidden 34", "digits", "nsf-coupling", coupling_builder(True), 34),
    ("NSF coupling + identity spline, default-initialised output", "checkerboard", "nsf-coupling",
     coupling_builder(True, zero_output=False), 64),
    ("NSF coupling + identity spline, default-initialised output", "digits", "nsf-coupling",
     coupling_builder(True, zero_output=False), 64),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    data = pf.datasets(sorted({v[1] for v in VARIANTS}))
    pf.LIBS = ("flowforge",)
    start = time.perf_counter()
    print(f"CPU: {cpu_description()}, torch {torch.__version__}, 1 thread; seeds 0..{args.seeds - 1}")
    print("| variant | set | parameters | test NLL per seed | mean |\n|---|---|---|---|---|")
    for label, name, model, builder, hidden in VARIANTS:
        pf.BUILDERS["flowforge"] = builder
        _, layers, steps, rounds, batch = pf.PLAN.get(name, pf.DEFAULT_PLAN)
        runs = [pf.compare(name, data[name], model, hidden, layers, steps, rounds, batch, seed=s)["flowforge"]
                for s in range(args.seeds)]
        tests = [r["test"] for r in runs]
        dim, ctx = data[name]["train"].shape[1], 0
        params = pf.n_params(builder(model, dim, ctx, hidden, layers)[1])
        print(f"| {label} | {name} | {params:,} | {' / '.join(f'{t:.4f}' for t in tests)} "
              f"| {statistics.mean(tests):.4f} |", flush=True)
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
