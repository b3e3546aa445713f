"""Images of your own: a `.npy` uint8 tensor (N, H, W) or (N, C, H, W), or a folder of PNG files
(all of one size, grey or RGB), as uint8 (N, C, H, W) split into train / valid / test by the same
seeded split as flat data (`user_arrays.split_rows`). There are no labels (all zero). An optional
context file (data.context_path: a .npy float array (N,) or (N, D), one row per image in file
order, folder files in name order) gives each image a context vector for a context-conditioned
model (`model.context_dim = D`); it is used as given (no standardisation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flowforge.data.images import ImageSplit
from flowforge.data.quantisation import reduce_bits
from flowforge.data.user_arrays import SPLIT_KEYS, split_rows
from flowforge.errors import DataError

CHANNELS = (1, 3)


def read_image_array(path: str | Path) -> torch.Tensor:
    """uint8 (N, C, H, W) from a .npy file of uint8 (N, H, W) or (N, C, H, W), C in {1, 3}."""
    path = Path(path).expanduser()
    if path.suffix.lower() != ".npy":
        raise DataError(f"{path}: expected a .npy file of uint8 images, got {path.suffix or 'no suffix'!r}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npy file ({err})") from None
    if a.dtype != np.uint8:
        raise DataError(f"{path}: images must be uint8 (values 0..255), got {a.dtype}")
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] not in CHANNELS:
        hint = " (channels last? transpose to (N, C, H, W))" if a.ndim == 4 and a.shape[-1] in CHANNELS else ""
        raise DataError(f"{path}: images have shape {a.shape}; expected (N, H, W) or (N, C, H, W) "
                        f"with C = 1 or 3{hint}")
    if a.shape[0] == 0:
        raise DataError(f"{path}: no images")
    return torch.from_numpy(np.ascontiguousarray(a))


def read_image_folder(path: str | Path) -> torch.Tensor:
    """uint8 (N, C, H, W) from every *.png in a folder, in name order; all of one size and mode."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: no such folder (data.path of an image-folder is a folder of PNG files)")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise DataError(f"{path}: no .png files in the folder")
    images, first = [], None
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                mode, size = im.mode, im.size
                if mode not in ("L", "RGB"):
                    raise DataError(f"{f}: PNG mode {mode}; expected greyscale (L) or RGB")
                a = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise DataError(f"{f}: not a readable PNG file ({err})") from None
        if first is None:
            first = (f, mode, size)
        elif (mode, size) != first[1:]:
            raise DataError(f"{f}: {mode} {size[0]}x{size[1]}, but {first[0].name} is {first[1]} "
                            f"{first[2][0]}x{first[2][1]}; every image must have the same size and mode")
        images.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(images))


def read_image_contexts(path: str | Path, n_images: int) -> torch.Tensor:
    """float32 (N, D) context vectors from a .npy file of N finite numbers or N rows of D."""
    path = Path(path).expanduser()
    if path.suffix.lower() != ".npy" or not path.is_file():
        raise DataError(f"{path}: data.context_path must be an existing .npy file of context vectors")
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npy file ({err})") from None
    if a.dtype.kind not in "fiu":
        raise DataError(f"{path}: contexts must be numbers, got dtype {a.dtype}")
    a = a.reshape(-1, 1) if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[1] == 0:
        raise DataError(f"{path}: contexts have shape {a.shape}; expected (N,) or (N, D)")
    if len(a) != n_images:
        raise DataError(f"{path}: {len(a)} context rows for {n_images} images (one row per image)")
    bad = int((~np.isfinite(a)).any(axis=1).sum())
    if bad:
        raise DataError(f"{path}: {bad} context rows hold NaN or infinite values")
    return torch.from_numpy(a.astype(np.float32))


def load_user_images(kind: str, path: str | Path, valid_fraction: float = 0.1, test_fraction: float = 0.1,
                     seed: int = 0, n_bits: int = 8, context_path: str | Path = "") -> dict[str, ImageSplit]:
    """The split images (`kind` "image-array" or "image-folder"), reduced to n bits; with
    `context_path`, each split's `labels` field holds its float context rows instead of zeros."""
    images = read_image_array(path) if kind == "image-array" else read_image_folder(path)
    contexts = read_image_contexts(context_path, len(images)) if context_path else None
    rows = split_rows(len(images), valid_fraction, test_fraction, seed)
    out = {}
    for name in SPLIT_KEYS:
        idx = torch.from_numpy(rows[name])
        if len(idx) == 0:
            raise DataError(f"{path}: {len(images)} images leave the {name} split empty "
                            f"(data.valid_fraction = {valid_fraction}, data.test_fraction = {test_fraction})")
        x = images[idx]
        second = contexts[idx] if contexts is not None else torch.zeros(len(x), dtype=torch.int64)
        out[name] = ImageSplit(x if n_bits == 8 else reduce_bits(x, n_bits), second)
    return out
