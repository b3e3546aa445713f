"""Non-finite step skipping without a host sync per step (`train.sync_free_skip`).

The default trainer reads `isfinite(loss)` on the host every step, which stalls the GPU queue.
Here every step runs backward and the update, and `MaskedUpdate` puts back the weights, the
optimizer state and the EMA shadow where the step was not finite, selecting on the device
(`torch.where` on one flat snapshot: a handful of kernels per step, not one per tensor). The
host reads the accumulated flags only at a boundary (a log, validation, sample or checkpoint
step), where it synchronises anyway.

Semantics: a step's batch and noise are functions of (seed, step), so the default trainer's
retry of a non-finite step fails again, `nonfinite_patience` times, and then rolls back to the
last checkpoint. With this switch the failure is seen at the next boundary and the trainer then
reports `nonfinite_patience` skipped steps and rolls back to the same checkpoint: the same run
(with deterministic kernels). No non-finite value ever reaches the weights or a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class MaskedUpdate:
    """Applies an update, then restores every tensor it touched where `ok` is False."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, shadow: nn.Module):
        self.model, self.optimizer, self.shadow = model, optimizer, shadow
        self.pending: list[Tensor] = []
        self.failed = False

    def ready(self) -> bool:
        """Masking needs the optimizer state to exist (it is created by the first update)."""
        return bool(self.optimizer.state)

    def _tensors(self) -> list[Tensor]:
        out = [p.data for p in self.model.parameters()]
        for p in self.model.parameters():
            out += [v for v in self.optimizer.state.get(p, {}).values() if isinstance(v, Tensor)]
        return out + [p.data for p in self.shadow.parameters()]

    @torch.no_grad()
    def apply(self, ok: Tensor, update: Callable[[], None]) -> None:
        tensors = self._tensors()
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(tensors):
            groups.setdefault((t.device, t.dtype), []).append(i)
        snapshots = {key: torch.cat([tensors[i].reshape(-1) for i in idx]) for key, idx in groups.items()}
        update()
        for key, idx in groups.items():
            group = [tensors[i] for i in idx]
            kept = torch.where(ok.to(key[0]), torch.cat([t.reshape(-1) for t in group]), snapshots[key])
            torch._foreach_copy_(group, [v.view(t.shape) for v, t in zip(kept.split([t.numel() for t in group]), group)])
        self.pending.append(ok)

    def settle(self) -> bool:
        """Read the pending flags (one host sync): False when a step since the last call failed."""
        if self.pending:
            self.failed |= not bool(torch.stack(self.pending).all())
            self.pending.clear()
        return not self.failed

    def reset(self) -> None:
        """After a rollback: nothing pending, nothing failed."""
        self.pending.clear()
        self.failed = False
