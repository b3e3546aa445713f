"""Peak activation memory of one training step (forward + backward of the NLL) against depth K,
for a chain of K Glow steps with ordinary backprop, memory-saving (reversible) backprop and
per-step gradient checkpointing. Issue 3's target: K=64 / K=8 <= 1.3x with reversible backprop.

CPU: bytes of the tensors autograd saves for backward (flowforge.training.activation_memory).
With checkpointing, torch's own saved-tensor hooks take over inside each checkpointed step, so the
meter sees only the stored step inputs, not the one step recomputed at a time in backward: that
column is a lower bound (add about one step's activations, plain / K). CUDA:
torch.cuda.max_memory_allocated above what was allocated before the step (everything counted).

    PYTHONPATH=src python benchmarks/memory_vs_depth.py [--depths 8 16 32 64] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from flowforge.bijections import Chain, data_dependent_init
from flowforge.bijections.memory_saving import run_chain
from flowforge.models.glow import flow_step
from flowforge.training.activation_memory import peak_memory

MODES = ("plain", "reversible", "checkpoint")


def measure(depth: int, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    chain = Chain([flow_step(args.channels, args.hidden, args.coupling, "sigmoid", "conv1x1", seed=k)
                   for k in range(depth)]).to(device)
    x = torch.randn(args.batch, args.channels, args.side, args.side, device=device)
    data_dependent_init(chain, chain, x)
    out = {}
    for mode in MODES:
        def step():
            z, logdet = run_chain(chain, x, memory_saving=mode == "reversible", checkpointing=mode == "checkpoint")
            (0.5 * z.pow(2).sum() - logdet.sum()).backward()
            chain.zero_grad(set_to_none=True)

        step()  # warm-up
        out[f"{mode}_bytes"] = peak_memory(step, list(chain.parameters()), device)
        start = time.perf_counter()
        for _ in range(args.repeats):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out[f"{mode}_s"] = (time.perf_counter() - start) / args.repeats
    return out


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--channels", type=int, default=12, help="channels after the first squeeze (3 x 4)")
    p.add_argument("--side", type=int, default=16, help="spatial side after the squeeze (32 / 2)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--coupling", choices=["affine", "additive"], default="affine")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    what = "CUDA max_memory_allocated" if device.type == "cuda" else "bytes saved for backward (CPU)"
    rows = [f"Peak activation memory, MiB ({what}); batch {args.batch} x {args.channels}x{args.side}x{args.side}, "
            f"hidden {args.hidden}, {args.coupling} coupling; time per step in s.", "",
            "| K | plain MiB | reversible MiB | checkpoint MiB | plain s | reversible s | checkpoint s |",
            "|---|---|---|---|---|---|---|"]
    results = {}
    for depth in args.depths:
        r = results[depth] = measure(depth, args, device)
        rows.append(f"| {depth} | " + " | ".join(f"{r[f'{m}_bytes'] / 2**20:.2f}" for m in MODES) + " | "
                    + " | ".join(f"{r[f'{m}_s']:.3f}" for m in MODES) + " |")
        print(rows[-1], flush=True)
    lo, hi = min(args.depths), max(args.depths)
    ratios = " | ".join(f"{m} {results[hi][f'{m}_bytes'] / results[lo][f'{m}_bytes']:.2f}x" for m in MODES)
    rows += ["", f"Memory ratio K={hi} / K={lo}: {ratios} (target for reversible: <= 1.3x)"]
    if device.type != "cuda":
        rows.append("checkpoint column on CPU: stored step inputs only (lower bound; see the docstring).")
    table = "\n".join(rows)
    print(table)
    return table


if __name__ == "__main__":
    main()
