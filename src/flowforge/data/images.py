"""Image data sets as uint8 image tensors with train / valid / test splits: MNIST and
Fashion-MNIST (idx files, read here) and the colour sets CIFAR-10, SVHN, downsampled ImageNet
32x32 / 64x64 and CelebA 64x64 (`readers`).

"test" is the official test set (t10k for MNIST, val for ImageNet); "valid" is ``n_valid``
examples held out of the official training set by a seeded random permutation, and "train" is
the rest of it, except for CelebA, whose official partition gives all three.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from flowforge.data.cifar10 import CIFAR10_CLASSES
from flowforge.data.idx import read_idx
from flowforge.data.imagenet_small import IMAGENET_CLASSES
from flowforge.data.locate import find_dataset_dir
from flowforge.data.quantisation import reduce_bits
from flowforge.data.readers import OFFICIAL_SPLITS, read_official
from flowforge.errors import DataError, ShapeError

__all__ = ["CLASS_NAMES", "DATASETS", "SPLITS", "ImageSplit", "load_image_split"]

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "svhn", "imagenet32", "imagenet64", "celeba")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "cifar10": CIFAR10_CLASSES,
    "svhn": tuple(str(i) for i in range(10)),
    # the release's class index minus one; it ships no names
    "imagenet32": tuple(str(i) for i in range(IMAGENET_CLASSES)),
    "imagenet64": tuple(str(i) for i in range(IMAGENET_CLASSES)),
    "celeba": (),  # no classes: the 40 attributes are in `celeba.load_celeba_attributes`
}

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class ImageSplit:
    """One split of an image set: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,) -- or, for
    images of your own with a context file (user_images.py), float32 context rows (N, D)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        contexts = self.labels.dim() == 2 and self.labels.dtype == torch.float32
        if self.images.dim() != 4 or (self.labels.dim() != 1 and not contexts) \
                or self.images.shape[0] != self.labels.shape[0]:
            raise ShapeError(
                f"ImageSplit: expected images (N, C, H, W) and labels (N,) or float contexts (N, D), got "
                f"{tuple(self.images.shape)} and {tuple(self.labels.shape)}"
            )
        if self.images.dtype != torch.uint8 or (self.labels.dtype != torch.int64 and not contexts):
            raise ValueError(
                f"ImageSplit: expected uint8 images and int64 labels, got {self.images.dtype} and {self.labels.dtype}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, mtime_ns: int, size: int) -> torch.Tensor:
    """Decoded idx file; keyed on mtime and size so a replaced file is read again."""
    del mtime_ns, size  # only part of the cache key
    return torch.from_numpy(read_idx(path))


def _read(path: Path) -> torch.Tensor:
    """The decoded idx file at ``path``, cached. Never hand the result out unchanged: it is shared."""
    resolved = path.resolve()
    try:
        st = os.stat(resolved)
    except OSError:
        return torch.from_numpy(read_idx(resolved))  # raises the DataError naming the file
    return _read_cached(str(resolved), st.st_mtime_ns, st.st_size)


def _load_files(folder: Path, name: str, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, H, W) and labels (N,) of the official "train" or "test" files (shared tensors)."""
    images_path, labels_path = (folder / f for f in _FILES[which])
    images = _read(images_path)
    labels = _read(labels_path)
    if images.dim() != 3:
        raise DataError(
            f"{images_path}: expected a 3-D idx file (N, H, W) of images, got {images.dim()}-D {tuple(images.shape)}"
        )
    if labels.dim() != 1:
        raise DataError(
            f"{labels_path}: expected a 1-D idx file (N,) of labels, got {labels.dim()}-D {tuple(labels.shape)}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels"
        )
    n_classes = len(CLASS_NAMES[name])
    if labels.numel() and int(labels.max()) >= n_classes:
        raise DataError(
            f"{labels_path}: label {int(labels.max())} out of range; {name} has {n_classes} classes (0..{n_classes - 1})"
        )
    return images.unsqueeze(1), labels


def load_image_split(
    name: str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    n_valid: int = 5000,
    seed: int = 0,
    download: bool = True,
    n_bits: int = 8,
) -> ImageSplit:
    """Load one split of an image set as uint8 images (N, C, H, W) and int64 labels (N,).

    Shapes: MNIST and Fashion-MNIST (1, 28, 28); CIFAR-10, SVHN, ImageNet32 (3, 32, 32);
    ImageNet64 and CelebA (3, 64, 64), channels RGB.
    "test" is the official test set (ImageNet: the official val set). "valid" holds ``n_valid``
    examples of the official training set picked by ``torch.randperm`` under a generator seeded
    with ``seed``; "train" is the rest (disjoint from "valid", together all of it). Both keep
    file order. CelebA uses its official partition for all three; ``n_valid`` and ``seed`` do
    not apply. ``n_bits < 8`` reduces the values to n bits (`quantisation.reduce_bits`).
    The data folder is found by ``find_dataset_dir(name, data_dir, download)``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if isinstance(n_valid, bool) or not isinstance(n_valid, int) or n_valid < 0:
        raise ValueError(f"n_valid must be an int >= 0, got {n_valid!r}")
    if isinstance(n_bits, bool) or not isinstance(n_bits, int) or not 1 <= n_bits <= 8:
        raise ValueError(f"n_bits must be an int in 1..8, got {n_bits!r}")

    folder = find_dataset_dir(name, data_dir=data_dir, download=download)
    out = _split(name, split, folder, n_valid, seed)
    return out if n_bits == 8 else ImageSplit(reduce_bits(out.images, n_bits), out.labels)


def _official(name: str, folder: Path, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """An official split's images and labels (shared, cached tensors: copy before handing out)."""
    if name in OFFICIAL_SPLITS:
        return read_official(name, folder, which)
    return _load_files(folder, name, which)


def _split(name: str, split: str, folder: Path, n_valid: int, seed: int) -> ImageSplit:
    """``split`` taken from the official files: as published, or "valid" held out of "train"."""
    if split == "test" or "valid" in OFFICIAL_SPLITS.get(name, ()):
        images, labels = _official(name, folder, split)
        return ImageSplit(images=images.clone(), labels=labels.to(torch.int64, copy=True))

    images, labels = _official(name, folder, "train")
    n_train = labels.shape[0]
    if n_valid >= n_train:
        raise ValueError(f"n_valid must be < the {n_train} training examples of {name}, got {n_valid}")
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_train, generator=generator)
    index = perm[:n_valid] if split == "valid" else perm[n_valid:]
    index, _ = torch.sort(index)
    return ImageSplit(images=images[index], labels=labels[index].long())
