"""A plain training loop for any flow or model, for code that brings its own data (the
run-directory trainer with checkpoints, validation and resume is `flowforge.runs.trainer`).

Each step minimises `model.loss(batch)["loss"]` when the model has a `loss`, else the mean NLL
`-model.log_prob(batch).mean()` (a batch may be `x` or `(x, context)`). A step whose loss or
gradient is not finite is skipped and counted, never applied. Hooks are called after every step
as `hook(step, model, record)` (e.g. diagnostics every N steps); progress is a tqdm bar on a
terminal and a line every `log_every` steps otherwise.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from flowforge.progress import progress_bar
from flowforge.training.ema import EMA

Hook = Callable[[int, nn.Module, dict], None]


def step_loss(model: nn.Module, batch) -> Tensor:
    """The loss the loop minimises for `batch` (module docstring)."""
    if hasattr(model, "loss"):
        return model.loss(batch)["loss"]
    if isinstance(batch, (tuple, list)):
        x, context = batch[0], (batch[1] if len(batch) > 1 else None)
        return -model.log_prob(x, context).mean()
    return -model.log_prob(batch).mean()


def fit(model: nn.Module, batches: Iterable, optimizer: torch.optim.Optimizer, steps: int, *,
        ema: EMA | None = None, grad_clip: float = 0.0, hooks: Sequence[Hook] = (), log_every: int = 100,
        progress: bool = True) -> list[dict]:
    """Train for `steps` steps over `batches` (cycled when shorter); returns one record per step:
    {"step", "loss", "skipped"}."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    model.train()
    records: list[dict] = []
    source = iter(batches)
    tty = progress and sys.stderr.isatty()
    bar = progress_bar(total=steps, disable=not tty, desc="fit")
    for step in range(steps):
        try:
            batch = next(source)
        except StopIteration:
            source = iter(batches)
            batch = next(source)
        loss = step_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        finite = bool(torch.isfinite(loss))
        if finite:
            loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
            finite = bool(torch.isfinite(norm))
        if finite:
            optimizer.step()
            if ema is not None:
                ema.update(model, step)
        record = {"step": step + 1, "loss": float(loss.detach()), "skipped": not finite}
        records.append(record)
        for hook in hooks:
            hook(step + 1, model, record)
        bar.update(1)
        if progress and not tty and ((step + 1) % log_every == 0 or step + 1 == steps):
            skipped = sum(r["skipped"] for r in records)
            print(f"fit: step {step + 1}/{steps} loss {record['loss']:.4f} ({skipped} skipped)", file=sys.stderr)
    bar.close()
    return records
