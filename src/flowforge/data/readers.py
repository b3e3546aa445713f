"""Which function reads the official files of each colour image set, and an in-process memo so
that loading "train" and then "valid" (both cut from the official training files) decodes them once.

Every reader takes the data set's folder (`locate.find_dataset_dir`) and an official split,
"train" or "test" (CelebA also "valid"), and returns uint8 images (N, C, H, W) and int64 labels (N,).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import torch

from flowforge.data.celeba import read_celeba
from flowforge.data.cifar10 import read_cifar10
from flowforge.data.imagenet_small import read_imagenet
from flowforge.data.layouts import LAYOUTS
from flowforge.data.svhn import read_svhn

__all__ = ["OFFICIAL_SPLITS", "READERS", "read_official"]

Reader = Callable[[Path, str], tuple[torch.Tensor, torch.Tensor]]

READERS: dict[str, Reader] = {
    "cifar10": read_cifar10,
    "svhn": read_svhn,
    "imagenet32": functools.partial(read_imagenet, size=32),
    "imagenet64": functools.partial(read_imagenet, size=64),
    "celeba": read_celeba,
}
#: The splits each set's release defines; a set without "valid" has it held out of "train".
OFFICIAL_SPLITS: dict[str, tuple[str, ...]] = {name: ("train", "test") for name in READERS}
OFFICIAL_SPLITS["celeba"] = ("train", "valid", "test")

# Decoded splits above this size are not kept: ImageNet64's 14.7 GiB training set is read again
# rather than held twice (memo and split) for the life of the process.
_MEMO_LIMIT_BYTES = 4 * 2**30
_memo: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _stamp(name: str, folder: Path) -> tuple:
    """Modification time and size of every file of the layout: a replaced file is read again."""
    out = []
    for f in LAYOUTS[name].files:
        try:
            st = os.stat(folder / f)
        except OSError:
            return ()
        out.append((f, st.st_mtime_ns, st.st_size))
    return tuple(out)


def read_official(name: str, folder: Path, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The official split ``which`` of ``name`` from ``folder``, memoised (one entry at a time).
    The tensors may be shared with the memo: never hand them out without copying."""
    if which not in OFFICIAL_SPLITS[name]:
        raise ValueError(f"{name} has no official {which!r} split; it has {OFFICIAL_SPLITS[name]}")
    key = (name, str(folder.resolve()), which, _stamp(name, folder))
    if key in _memo:
        return _memo[key]
    images, labels = READERS[name](folder, which)
    _memo.clear()
    if images.numel() + 8 * labels.numel() <= _MEMO_LIMIT_BYTES:
        _memo[key] = (images, labels)
    return images, labels
