"""Multi-process data-parallel training (`torchrun --nproc-per-node N -m flowforge.cli train ...`).

Exactness: every rank draws the same global batch and the same dequantisation noise for it
(both are functions of (seed, step), as in trainer.py) and computes on its contiguous 1/N
slice; DistributedDataParallel averages the gradients, so each update equals the update one
process makes on the global batch (up to float summation order). Actnorm's data-dependent
init runs on each rank's slice of the init batch with the statistics all-reduced
(bijections/actnorm.py), so every rank starts identical and equal to a one-process init.

Rank 0 writes the run directory (metrics, samples, checkpoints, report); rank r > 0 keeps the
same files in RUN_DIR/.rank-r, so every rank can resume from its own (identical) checkpoint.
Backend: NCCL on CUDA, gloo on CPU. Image models without class conditioning only.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from flowforge.bijections.actnorm import data_dependent_init
from flowforge.errors import ConfigError
from flowforge.models.base import ImageModel
from flowforge.objectives.bits_per_dim import bits_per_dim


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)."""
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local), torch.device(f"cuda:{local}" if use_cuda else "cpu")


def shard(n: int, info: DistInfo) -> slice:
    """This rank's contiguous slice of a global batch of n (n must divide evenly)."""
    if n % info.world_size:
        raise ConfigError(f"batch of {n} does not split evenly over {info.world_size} processes")
    per = n // info.world_size
    return slice(info.rank * per, (info.rank + 1) * per)


def global_mean(value: Tensor) -> Tensor:
    """Mean of a per-rank scalar over ranks (each rank holds an equal share of the batch)."""
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def cpu_group():
    """A process group for small host-side agreements: the default group under gloo, a gloo group
    beside NCCL (a CPU broadcast there waits on no CUDA stream). Every rank must call it."""
    return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


def agreed_seconds(seconds: float, info: DistInfo, group=None) -> float:
    """Rank 0's `seconds` on every rank (one broadcast of a CPU float64 over `group`)."""
    if info.world_size == 1:
        return seconds
    value = torch.tensor([seconds], dtype=torch.float64)
    dist.broadcast(value, src=0, group=group)
    return float(value)


class BitsPerDimLoss(nn.Module):
    """Mean bits/dim of dequantised model-space images: the module DDP wraps."""

    def __init__(self, model: ImageModel):
        super().__init__()
        if not isinstance(model, ImageModel) or getattr(model, "num_classes", 0) or getattr(model, "context_dim", 0):
            raise ConfigError("multi-process training supports unconditional image models only")
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return bits_per_dim(self.model.log_prob(x), self.model.num_dims, self.model.n_bits).mean()


def wrap(model: ImageModel, device: torch.device) -> DistributedDataParallel:
    # buffers (actnorm flags, permutations) are identical on every rank: no per-step broadcast
    with warnings.catch_warnings():  # torch 2.13 renames the option; the old one keeps the init-time behaviour
        warnings.simplefilter("ignore", FutureWarning)
        return DistributedDataParallel(BitsPerDimLoss(model), device_ids=[device.index] if device.type == "cuda" else None,
                                       broadcast_buffers=False)


def sharded_input(model: ImageModel, images: Tensor, generator: torch.Generator, info: DistInfo) -> Tensor:
    """This rank's slice of the dequantised global batch (noise drawn for the whole batch)."""
    return model.prepare(images, generator)[shard(len(images), info)]


def initialize_sharded(model: ImageModel, images: Tensor, generator: torch.Generator, info: DistInfo) -> int:
    """Data-dependent actnorm init from this rank's slice, statistics all-reduced across ranks."""
    x = sharded_input(model, images, generator, info)
    return data_dependent_init(model, model.log_prob, x)


def distributed_step(ddp: DistributedDataParallel, optimizer: torch.optim.Optimizer, x: Tensor,
                     grad_clip: float) -> Tensor | None:
    """One data-parallel update on this rank's slice; the global mean loss, or None when the
    loss or the gradient norm is not finite (decided identically on every rank)."""
    loss = ddp(x)
    mean = global_mean(loss)
    if not torch.isfinite(mean):
        return None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # DDP all-reduces (averages) the gradients here
    norm = torch.nn.utils.clip_grad_norm_(ddp.parameters(), grad_clip if grad_clip > 0 else math.inf)
    if not torch.isfinite(norm):  # gradients are identical on every rank after the all-reduce
        optimizer.zero_grad(set_to_none=True)
        return None
    optimizer.step()
    return mean


def rank_run_dir(run_dir: Path, info: DistInfo) -> Path:
    return run_dir if info.is_main else run_dir / f".rank-{info.rank}"
