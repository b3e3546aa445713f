"""CIFAR-10 (Krizhevsky 2009) from its "python version" release, ``cifar-10-python.tar.gz``.

Published layout: ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5`` (the 50,000 training
images) and ``cifar-10-batches-py/test_batch`` (10,000). Each batch is a pickled dict with bytes
keys: ``b'data'`` a (10000, 3072) uint8 array whose row holds the 1024 red, then 1024 green, then
1024 blue values of a 32x32 image in row-major order; ``b'labels'`` a list of 10,000 ints in 0..9;
``b'batch_label'`` and ``b'filenames'``. Batches are read with `safe_pickle`, never plain pickle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flowforge.data.safe_pickle import load_restricted_pickle
from flowforge.errors import DataError

__all__ = ["CIFAR10_CLASSES", "read_cifar10"]

#: The class names of ``batches.meta`` (``label_names``), in label order.
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
_FOLDER = "cifar-10-batches-py"
_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_SIDE = 32


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = load_restricted_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: expected a CIFAR-10 batch dict with keys b'data' and b'labels', got {keys}")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * _SIDE**2:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' must be a uint8 array (N, 3072), got {desc}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: b'labels' must be {data.shape[0]} ints, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise DataError(f"{path}: label {int(labels.max())} out of range; CIFAR-10 has 10 classes (0..9)")
    return data, labels


def read_cifar10(folder: Path, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The official "train" (data_batch_1..5, in that order) or "test" (test_batch) images as
    uint8 (N, 3, 32, 32) RGB and labels int64 (N,). ``folder`` holds ``cifar-10-batches-py/``."""
    parts = [_read_batch(folder / _FOLDER / name) for name in _BATCHES[which]]
    data = np.concatenate([d for d, _ in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([lab for _, lab in parts]).astype(np.int64)
    if not data.flags.writeable:  # an array unpickled over its bytes can be read-only
        data = data.copy()
    images = np.ascontiguousarray(data).reshape(-1, 3, _SIDE, _SIDE)  # RGB planes, each row-major
    return torch.from_numpy(images), torch.from_numpy(labels)
