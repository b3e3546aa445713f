"""SVHN (Netzer et al. 2011), "Format 2: cropped digits": ``train_32x32.mat`` (73,257 images)
and ``test_32x32.mat`` (26,032); ``extra_32x32.mat`` is not used.

Each file is a MATLAB v5 file with ``X`` a (32, 32, 3, N) uint8 array indexed (row, column,
RGB channel, image) and ``y`` an (N, 1) array of labels 1..10, where 10 stands for the digit 0.
Read with ``scipy.io.loadmat`` (``pip install scipy``, or the ``colour`` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flowforge.errors import DataError

__all__ = ["read_svhn"]

_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _loadmat(path: Path) -> dict:
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise DataError("reading SVHN's .mat files needs scipy: pip install scipy (or flowforge[colour])") from None
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return loadmat(path, variable_names=("X", "y"))
    except (MatReadError, ValueError, TypeError, OSError, EOFError, IndexError) as e:
        raise DataError(f"{path}: not a readable MATLAB v5 file, truncated or corrupt ({type(e).__name__}: {e})") from e


def read_svhn(folder: Path, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The official "train" or "test" images as uint8 (N, 3, 32, 32) RGB and labels int64 (N,)
    in 0..9 (the file's label 10 is the digit 0)."""
    path = folder / _FILES[which]
    mat = _loadmat(path)
    if "X" not in mat or "y" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: expected the variables X and y, found {found}")
    x, y = mat["X"], np.asarray(mat["y"])
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: X must be uint8 (32, 32, 3, N), got {x.dtype} {x.shape}")
    n = x.shape[3]
    if y.shape not in ((n, 1), (n,)) or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{path}: y must be ({n}, 1) labels, got {y.dtype} {y.shape}")
    y = y.reshape(n).astype(np.int64)
    if n and (y.min() < 1 or y.max() > 10):
        bad = int(y.min()) if y.min() < 1 else int(y.max())
        raise DataError(f"{path}: label {bad} out of range; SVHN's labels are 1..10 (10 is the digit 0)")
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (row, col, channel, n) -> (n, channel, row, col)
    return torch.from_numpy(images), torch.from_numpy(y % 10)
