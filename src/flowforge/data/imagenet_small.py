"""Downsampled ImageNet at 32x32 and 64x64 (Chrabaszcz, Loshchilov & Hutter 2017, "A
Downsampled Variant of ImageNet as an Alternative to the CIFAR datasets"), npz release.

Published layout (SIZE = 32 or 64): ``ImagenetSIZE_train_npz/train_data_batch_1.npz`` ..
``train_data_batch_10.npz`` (1,281,167 images together) and ``ImagenetSIZE_val_npz/val_data.npz``
(the 50,000 official validation images, flowforge's "test" split). Each npz holds ``data``, an
(N, 3 * SIZE * SIZE) uint8 array whose row is the red, green and blue planes of one image, each
row-major (as CIFAR), and ``labels``, N ints in 1..1000; the training batches also hold ``mean``,
which is not used. Files are read with ``allow_pickle=False``.

Memory: the training set is 3.7 GiB at 32x32 and 14.7 GiB at 64x64 as uint8.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from flowforge.errors import DataError

__all__ = ["IMAGENET_CLASSES", "read_imagenet"]

IMAGENET_CLASSES = 1000
_N_TRAIN_BATCHES = 10


def _files(size: int, which: str) -> list[Path]:
    if which == "train":
        return [Path(f"Imagenet{size}_train_npz") / f"train_data_batch_{i}.npz" for i in range(1, _N_TRAIN_BATCHES + 1)]
    return [Path(f"Imagenet{size}_val_npz") / "val_data.npz"]


def _member(path: Path, key: str) -> np.ndarray:
    """One array of an npz file; a one-line DataError naming the file when it cannot be read."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise DataError(f"{path}: expected the arrays 'data' and 'labels', found {sorted(npz.files)}")
            return npz[key]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a readable npz file, truncated or corrupt ({type(e).__name__}: {e})") from e


def _labels(path: Path) -> np.ndarray:
    labels = _member(path, "labels")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'labels' must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 1 or labels.max() > IMAGENET_CLASSES):
        bad = int(labels.min()) if labels.min() < 1 else int(labels.max())
        raise DataError(f"{path}: label {bad} out of range; the release's labels are 1..{IMAGENET_CLASSES}")
    return labels.astype(np.int64) - 1


def read_imagenet(folder: Path, which: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official "train" (batches 1..10 in order) or "test" (= official val) images as uint8
    (N, 3, size, size) RGB and labels int64 (N,) in 0..999 (the release's 1-based label minus 1)."""
    if size not in (32, 64):
        raise ValueError(f"downsampled ImageNet comes at 32 or 64 pixels, got {size}")
    paths = [folder / p for p in _files(size, which)]
    labels = [_labels(p) for p in paths]  # labels first: the count sizes one buffer for all the data
    n = sum(len(lab) for lab in labels)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    start = 0
    for path, lab in zip(paths, labels):
        data = _member(path, "data")
        if data.dtype != np.uint8 or data.shape != (len(lab), 3 * size * size):
            raise DataError(f"{path}: 'data' must be uint8 ({len(lab)}, {3 * size * size}) to match its "
                            f"{len(lab)} labels, got {data.dtype} {data.shape}")
        images[start : start + len(lab)] = data.reshape(-1, 3, size, size)  # RGB planes, each row-major
        start += len(lab)
    return torch.from_numpy(images), torch.from_numpy(np.concatenate(labels))
