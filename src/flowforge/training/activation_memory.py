"""Activation memory of a training step, measured honestly on any device.

On CPU there is no allocator high-water mark, so `SavedTensorMeter` counts what backprop actually
keeps: every tensor autograd saves for backward passes through `saved_tensors_hooks`; the meter
holds each by a small wrapper whose destruction (when autograd frees the graph node) releases its
bytes. Storages shared by several saved tensors are counted once; parameters are excluded (they
exist whatever the gradient scheme). Keep the meter active over forward *and* backward: the
memory-saving backward builds one layer's graph at a time, and those tensors count too. The peak
is the largest sum of live saved bytes seen. On CUDA, `peak_memory` uses
torch.cuda.max_memory_allocated instead (every allocation, not only saved tensors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class _Held:
    """A saved tensor; releases its bytes in the meter when autograd drops it."""

    __slots__ = ("meter", "key", "tensor")

    def __init__(self, meter: "SavedTensorMeter", key: int, tensor: Tensor):
        self.meter, self.key, self.tensor = meter, key, tensor

    def __del__(self):
        self.meter._release(self.key)


class SavedTensorMeter:
    """Context manager: live and peak bytes of the tensors autograd saves for backward."""

    def __init__(self, exclude: Iterable[Tensor] = ()):
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._live: dict[int, list[int]] = {}  # storage pointer -> [references, bytes]
        self.current = 0
        self.peak = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: Tensor):
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. some subclasses)
            return t
        key = storage.data_ptr()
        if key in self._excluded or storage.nbytes() == 0:
            return t
        entry = self._live.get(key)
        if entry is None:
            self._live[key] = [1, storage.nbytes()]
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        else:
            entry[0] += 1
        return _Held(self, key, t)

    @staticmethod
    def _unpack(packed):
        return packed.tensor if isinstance(packed, _Held) else packed

    def _release(self, key: int) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self._live[key]

    def __enter__(self) -> "SavedTensorMeter":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def peak_memory(step: Callable[[], None], parameters: Iterable[Tensor] = (), device: torch.device | str = "cpu") -> int:
    """Peak activation bytes of `step()` (forward and backward): torch.cuda.max_memory_allocated
    above the memory already held on CUDA; the saved-tensor meter elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with SavedTensorMeter(exclude=parameters) as meter:
        step()
    return meter.peak


__all__ = ["SavedTensorMeter", "peak_memory"]
