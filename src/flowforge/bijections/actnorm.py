"""Activation normalisation (Glow, Kingma & Dhariwal 2018, section 3.1, table 1 row 1).

    y = (x + b) * exp(logs)     per channel;   log|det| = H * W * sum(logs)

`b` and `logs` are initialised from data so that the first batch's post-actnorm channels have
zero mean and unit variance (the public code: b = -mean, logs = log(1 / (std + 1e-6))).
Initialisation is explicit (`data_dependent_init`), runs once, and is recorded in the buffer
`initialized`, which is saved with the weights, so a loaded checkpoint never re-initialises.
Under torch.distributed the statistics are all-reduced, so every rank starts identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.distributed as dist
from torch import Tensor, nn

from flowforge.bijections.base import Bijection, spatial_size
from flowforge.errors import ShapeError


def _mean_over_batch_and_space(x: Tensor) -> Tensor:
    dims = [0] + list(range(2, x.dim()))
    mean = x.mean(dim=dims)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(mean)
        mean = mean / dist.get_world_size()
    return mean


class ActNorm(Bijection):
    """Per-channel affine map with data-dependent initialisation, for (B, C, H, W) or (B, C)."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.log_scale = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("initialized", torch.tensor(False))
        self._init_requested = False

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        return p.view(1, -1, *([1] * (x.dim() - 2)))

    def _check(self, x: Tensor) -> None:
        if x.dim() < 2 or x.shape[1] != self.num_channels:
            raise ShapeError(
                f"ActNorm({self.num_channels}) expects (B, {self.num_channels}, ...), got {tuple(x.shape)}"
            )

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        x = x.detach().float()
        mean = _mean_over_batch_and_space(x)
        centred = x - self._view(mean, x)
        var = _mean_over_batch_and_space(centred**2)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(var.sqrt() + self.eps))
        self.initialized.fill_(True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        if self._init_requested and not bool(self.initialized):
            self._initialize(x)
        y = (x + self._view(self.bias, x)) * self._view(self.log_scale.exp(), x)
        logdet = (self.log_scale.sum() * spatial_size(x)).expand(x.shape[0])
        return y, logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z)
        x = z * self._view((-self.log_scale).exp(), z) - self._view(self.bias, z)
        logdet = (-self.log_scale.sum() * spatial_size(z)).expand(z.shape[0])
        return x, logdet


@contextmanager
def _init_requested(model: nn.Module) -> Iterator[list[ActNorm]]:
    layers = [m for m in model.modules() if isinstance(m, ActNorm)]
    for m in layers:
        m._init_requested = True
    try:
        yield layers
    finally:
        for m in layers:
            m._init_requested = False


def is_initialized(model: nn.Module) -> bool:
    """True when every ActNorm inside `model` has been initialised (or there is none)."""
    return all(bool(m.initialized) for m in model.modules() if isinstance(m, ActNorm))


@torch.no_grad()
def data_dependent_init(model: nn.Module, run_forward, batch) -> int:
    """Initialise every not-yet-initialised ActNorm in `model` by one forward pass on `batch`.

    `run_forward(batch)` must push the batch through the model in the data -> latent direction;
    layers are initialised in the order data reaches them, so each sees already-normalised input.
    Returns how many layers were initialised (0 when all already were, e.g. after loading).
    The pass runs eagerly even where parts of the model are compiled (the speed switches): it
    runs once, on another batch size, and its data-dependent branch would break a graph.
    """
    with _init_requested(model) as layers, _eager():
        todo = sum(not bool(m.initialized) for m in layers)
        if todo:
            run_forward(batch)
    return todo


def _eager():
    """Every torch.compile'd function runs eagerly inside (torch >= 2.6; a no-op before)."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance is not None else nullcontext()
