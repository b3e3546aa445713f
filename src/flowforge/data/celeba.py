"""CelebA (Liu et al. 2015) as 64x64 uint8 images with the RealNVP / Glow preprocessing, its
official train / valid / test partition and its 40 binary attributes.

Published layout: ``img_align_celeba/000001.jpg`` .. ``202599.jpg`` (the "Align&Cropped" JPEGs,
178 wide by 218 high), ``list_attr_celeba.txt`` and ``list_eval_partition.txt`` side by side
(`celeba_lists`).

Preprocessing (Dinh et al. 2017, RealNVP's ``celeba_formatting.py``, reused by Glow): the 148x148
crop at rows 40:188 and columns 15:163 of the 218x178 image. That box is not centred vertically
(the centre would be rows 35:183); it is the published one. The crop is then resized to 64x64 with
PIL's BOX filter (each output pixel the mean of its 2.3125-pixel square of input pixels), where
RealNVP used TensorFlow's bilinear resize, so the pixels are close to, not bit-identical with,
the papers' preprocessing.

Decoding 202,599 JPEGs takes minutes, so the first load writes the preprocessed (N, 3, 64, 64)
uint8 array, in list_eval_partition.txt order, to ``CACHE_NAME`` beside the files (or in the
per-user cache when that folder is read-only) and later loads read it. Delete the file to rebuild.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from flowforge.data.celeba_lists import PARTITION_CODES, CelebAAttributes, read_attributes, read_partition
from flowforge.data.locate import cache_dir, find_dataset_dir
from flowforge.errors import DataError

__all__ = ["CACHE_NAME", "CROP_BOX", "IMAGE_SIZE", "load_celeba_attributes", "preprocess_celeba", "read_celeba"]

IMAGE_SIZE = 64
#: PIL's (left, upper, right, lower): columns 15:163, rows 40:188 of the 178x218 aligned image.
CROP_BOX: tuple[int, int, int, int] = (15, 40, 163, 188)
_ALIGNED_SIZE = (178, 218)  # PIL's (width, height)
CACHE_NAME = "celeba_64x64_rows40-188_cols15-163_box.npy"
_IMAGES = "img_align_celeba"
_PARTITION, _ATTRIBUTES = "list_eval_partition.txt", "list_attr_celeba.txt"


def preprocess_celeba(path: Path) -> np.ndarray:
    """One aligned CelebA JPEG as uint8 (3, 64, 64) RGB: crop `CROP_BOX`, BOX-resize to 64x64."""
    from PIL import Image  # only when decoding: importing flowforge.data stays light

    try:
        with Image.open(path) as im:
            if im.size != _ALIGNED_SIZE:
                raise DataError(f"{path}: expected a {_ALIGNED_SIZE[0]}x{_ALIGNED_SIZE[1]} aligned CelebA image, "
                                f"got {im.size[0]}x{im.size[1]}")
            small = im.convert("RGB").crop(CROP_BOX).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (list_eval_partition.txt lists it)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot decode the JPEG, truncated or corrupt ({e})") from e
    return np.asarray(small, dtype=np.uint8).transpose(2, 0, 1)


def _build_cache(folder: Path, names: list[str], dest: Path) -> None:
    """Decode every image into ``dest`` atomically (a temporary .npy beside it, then a rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    n = len(names)
    print(f"flowforge: celeba: preprocessing {n} images (crop rows 40:188, cols 15:163, box-resize to 64x64) "
          f"-> {dest}", file=sys.stderr, flush=True)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 3, IMAGE_SIZE, IMAGE_SIZE))
        step = max(1, n // 10)
        for i, name in enumerate(names):
            out[i] = preprocess_celeba(folder / _IMAGES / name)
            if (i + 1) % step == 0 or i + 1 == n:
                print(f"flowforge: celeba: {i + 1}/{n} images", file=sys.stderr, flush=True)
        out.flush()
        del out
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _cached_images(folder: Path, names: list[str]) -> np.ndarray:
    """All preprocessed images (N, 3, 64, 64) in partition order, memory-mapped from the cache."""
    places = (folder / CACHE_NAME, cache_dir("celeba") / CACHE_NAME)
    path = next((p for p in places if p.is_file()), None)
    if path is None:
        try:
            _build_cache(folder, names, places[0])
            path = places[0]
        except PermissionError:  # read-only data folder: the per-user cache instead
            _build_cache(folder, names, places[1])
            path = places[1]
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: unreadable preprocessed CelebA cache ({e}); delete it to rebuild") from e
    if images.dtype != np.uint8 or images.shape != (len(names), 3, IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{path}: cache holds {images.dtype} {images.shape} but {_PARTITION} lists {len(names)} "
                        f"images of (3, {IMAGE_SIZE}, {IMAGE_SIZE}); delete it to rebuild")
    return images


def read_celeba(folder: Path, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The official "train", "valid" or "test" partition as uint8 (N, 3, 64, 64) RGB in file
    order, and labels int64 (N,) all 0 (CelebA has no classes; see `load_celeba_attributes`)."""
    names, codes = read_partition(folder / _PARTITION)
    index = np.flatnonzero(codes == PARTITION_CODES[which])
    images = torch.from_numpy(np.ascontiguousarray(_cached_images(folder, names)[index]))
    return images, torch.zeros(len(index), dtype=torch.int64)


def load_celeba_attributes(
    split: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> CelebAAttributes:
    """The 40 attributes of the images of ``load_image_split("celeba", split)``, row for row.

    ``split`` is the official partition, "train", "valid" or "test"; ``download`` is accepted for
    symmetry with the image loaders (CelebA has no open download).
    """
    if split not in PARTITION_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(PARTITION_CODES)}")
    folder = find_dataset_dir("celeba", data_dir=data_dir, download=download)
    names, codes = read_partition(folder / _PARTITION)
    attribute_names, rows = read_attributes(folder / _ATTRIBUTES)
    chosen = [names[i] for i in np.flatnonzero(codes == PARTITION_CODES[split])]
    absent = [n for n in chosen if n not in rows]
    if absent:
        raise DataError(f"{folder / _ATTRIBUTES}: no attributes for {len(absent)} images of {_PARTITION}, "
                        f"e.g. {absent[0]}")
    values = np.stack([rows[n] for n in chosen]) if chosen else np.zeros((0, len(attribute_names)), np.int64)
    return CelebAAttributes(attribute_names, torch.from_numpy(values))
