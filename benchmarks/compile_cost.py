"""First-step cost of compiling the flow pass on this machine: Glow L=2, K=16, hidden 256,
batch 64 (the bench architecture), one training step (dequantise, log-density, backward,
clip, Adamax) timed from a cold compile cache (a fresh TORCHINDUCTOR_CACHE_DIR unless one is
given), then the median of the next steps; wall-clock and this process's CPU time (the CPU time is what a
shared machine does not inflate: with one thread it is the work done).

    PYTHONPATH=src python benchmarks/compile_cost.py MODE [SWITCHES] [--cache DIR]

MODE: `eager`, `flow` (the whole data -> latent pass one graph, `Glow.compile_flow`) or
`regional` (`Glow.compile_flow(regional=True)`: one flow step compiled and the graph reused by
every step of the same shape). SWITCHES: `bf16+channels-last` (default) or `float32`."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("eager", "flow", "regional"))
    p.add_argument("switches", nargs="?", default="bf16+channels-last")
    p.add_argument("--cache", default="")
    p.add_argument("--steps", type=int, default=4)
    a = p.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = a.cache or tempfile.mkdtemp(prefix="inductor-cold-")
    # compile in this process (no worker pool), so its CPU time holds the whole compilation
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    import torch

    from flowforge.models.glow import Glow
    from flowforge.training.speed import SpeedOptions, apply_speed_options

    torch.manual_seed(0)
    model = Glow((1, 28, 28), levels=2, depth=16, hidden=256)
    images = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8)
    model.initialize(images)
    bf16 = "bf16" in a.switches
    apply_speed_options(model, SpeedOptions(channels_last="channels-last" in a.switches,
                                            coupling_dtype="bfloat16" if bf16 else "float32"))
    if a.mode != "eager":
        model.compile_flow(regional=a.mode == "regional")
    opt = torch.optim.Adamax(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    times, cpu = [], []
    for i in range(1 + a.steps):
        batch = images[64 * (i % 4):64 * (i % 4 + 1)]
        t0, c0 = time.perf_counter(), time.process_time()
        loss = model.loss(batch, generator=gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    steady, steady_cpu = statistics.median(times[1:]), statistics.median(cpu[1:])
    print(f"mode={a.mode} switches={a.switches} threads={torch.get_num_threads()} cache={os.environ['TORCHINDUCTOR_CACHE_DIR']}"
          f" first_step_s={times[0]:.1f} steady_step_s={steady:.3f} compile_cost_s={times[0] - steady:.1f}"
          f" | process CPU time (robust to a shared machine): first_step_cpu_s={cpu[0]:.1f}"
          f" steady_step_cpu_s={steady_cpu:.3f} compile_cpu_s={cpu[0] - steady_cpu:.1f} loss={loss.item():.4f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
