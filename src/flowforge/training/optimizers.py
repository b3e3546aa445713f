"""Optimisers by name, each with torch's fastest implementation of its update for the parameters'
device: Adam's fused kernel (one kernel over all parameters instead of a dozen ops per tensor;
CPU and CUDA since torch 2.4), Adamax's multi-tensor ("foreach") form, which has no fused kernel.
The arithmetic is the same update as the per-tensor loop; on the CPU torch uses that loop unless
told otherwise. Measured on a 2-D MAF (4 MADE steps, hidden 64, batch 256, one AVX2 EPYC thread,
interleaved in one process, benchmarks/optimizer_update.py): the whole training step 1.24x faster
with fused Adam, 1.08x with foreach Adamax (docs/performance.md).

`capturable` (the step counters kept on the device, for masked updates without host reads,
training/sync_free.py) keeps the per-tensor capturable form.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
_FUSED_DEVICES = ("cpu", "cuda")
_FUSED_DTYPES = (torch.float32, torch.float64)


def _implementation(name: str, params: list[torch.Tensor], capturable: bool) -> dict:
    """Keyword arguments selecting the fastest update implementation for `params`."""
    if capturable or not params:
        return {}
    if name == "adam" and all(p.device.type in _FUSED_DEVICES and p.dtype in _FUSED_DTYPES for p in params):
        return {"fused": True}
    return {"foreach": True}


def make_optimizer(name: str, params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.0,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """`name` ("adam" or "adamax") over `params` with its fastest implementation (module docstring)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    params = list(params)
    extra = {"capturable": True} if capturable else _implementation(name, params, capturable)
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, **extra)


def keep_fast_implementation(optimizer: torch.optim.Optimizer) -> None:
    """After `optimizer.load_state_dict`: a checkpoint written by a per-tensor-loop optimiser also
    restores its implementation flags; put the fastest one back (the update is the same)."""
    name = next((n for n, cls in OPTIMIZERS.items() if type(optimizer) is cls), None)
    if name is None:
        return
    for group in optimizer.param_groups:
        if group.get("capturable"):
            continue
        impl = _implementation(name, list(group["params"]), False)
        for key in ("fused", "foreach"):
            if key in group:
                group[key] = impl.get(key)
        if impl.get("fused"):  # the fused kernel reads its step counters on the parameters' device
            for p in group["params"]:
                state = optimizer.state.get(p, {})
                if torch.is_tensor(state.get("step")):
                    state["step"] = state["step"].to(device=p.device, dtype=torch.float32)
