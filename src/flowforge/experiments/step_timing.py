"""Seconds per training step of several runs' models, measured interleaved in one process: round
after round, each model takes `steps` optimiser steps on the same real batches, so a machine whose
load changes (a shared CPU) slows every model alike. The median over rounds is reported."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from flowforge.runs.run_dir import build_model, load_trained, read_run_config


def _fresh_copy(run_dir: Path):
    """The run's model with its trained weights (so frozen parts and the Glow layer are as trained)
    and an Adam optimiser over its trainable parameters."""
    cfg = read_run_config(run_dir)
    _, trained, state = load_trained(run_dir, which="last")
    model = build_model(cfg, {k: tuple(v) if isinstance(v, list) else v for k, v in state["model_data_args"].items()})
    model.load_state_dict(trained.state_dict())
    model.train()
    # a small learning rate: the time of a step does not depend on it, and the weights stay sane
    return model, torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr * 1e-3)


def interleaved_seconds_per_step(run_dirs: dict[str, Path], images: torch.Tensor, batch_size: int = 64,
                                 steps: int = 10, rounds: int = 4, seed: int = 0) -> dict[str, float]:
    """{name: median seconds per step} of each run's model (a warm-up step per model is not timed)."""
    models = {name: _fresh_copy(Path(d)) for name, d in run_dirs.items()}
    gen = torch.Generator().manual_seed(seed)
    times: dict[str, list[float]] = {name: [] for name in models}

    def step(model, opt):
        batch = images[torch.randint(0, len(images), (batch_size,), generator=gen)]
        out = model.loss((batch,), generator=gen)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()

    for model, opt in models.values():
        step(model, opt)
    for _ in range(rounds):
        for name, (model, opt) in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                step(model, opt)
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}
