"""Synthetic FID Inception weights and the pytorch-fid reference fixture, shared by
tests/test_inception.py and tests/fixtures/make_inception_reference.py (which runs in a venv with
pytorch-fid and torchvision, so this file imports neither flowforge nor them).

The real weights file cannot be fetched here, so both sides fill the network with the same
deterministic weights. Each tensor comes from its own generator, seeded from the key name, and
from uniform draws only (bit-identical across CPUs for one torch version; normal draws take a
vectorised path on some CPUs): conv weights He-uniform (variance 2 / fan-in, so the activations
stay of order 1 through the 94 conv + BN + ReLU layers), BN statistics and affine parameters
mildly around 0 and 1.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

SEED = 20151205
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "inception_reference.npz"


def _uniform(name: str, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(SEED + zlib.crc32(name.encode()))
    return torch.rand(shape, generator=gen, dtype=torch.float32) * (high - low) + low


def synthetic_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The synthetic value of the state-dict entry `name` with `shape`."""
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.long)
    if name.endswith("conv.weight"):
        bound = math.sqrt(6.0 / math.prod(shape[1:]))  # He-uniform: variance 2 / fan-in
        return _uniform(name, shape, -bound, bound)
    if name.endswith("fc.weight"):
        bound = 1.0 / math.sqrt(shape[1])
        return _uniform(name, shape, -bound, bound)
    ranges = {"bn.weight": (0.8, 1.2), "bn.bias": (-0.2, 0.2), "bn.running_mean": (-0.2, 0.2),
              "bn.running_var": (0.7, 1.3), "fc.bias": (-0.1, 0.1)}
    for suffix, (low, high) in ranges.items():
        if name.endswith(suffix):
            return _uniform(name, shape, low, high)
    raise KeyError(f"no synthetic rule for state-dict entry {name!r}")


def synthetic_state(manifest: Iterable[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    """Synthetic state dict for the (key, shape) pairs of `manifest`, in its order."""
    return {name: synthetic_tensor(name, tuple(shape)) for name, shape in manifest}


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the keys and the tensors' bytes, in the dict's order."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_fixture(path: Path = FIXTURE) -> dict:
    """The fixture as plain Python / torch objects (see make_inception_reference.py)."""
    with np.load(path, allow_pickle=False) as data:
        out = {k: torch.from_numpy(data[k].copy()) for k in ("grey", "rgb", "features_grey", "features_rgb")}
        out["manifest"] = [(k, tuple(s)) for k, s in json.loads(str(data["manifest"]))]
        out["provenance"] = json.loads(str(data["provenance"]))
    return out
