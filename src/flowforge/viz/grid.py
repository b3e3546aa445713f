"""Image grids and PNG output for samples, temperature sweeps and interpolations (uint8 only)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from flowforge.viz.atomic_file import write_atomically

__all__ = ["make_grid", "save_image", "save_rows"]

_ROW_PADDING = 2
_PAD_VALUE = 255
_LABEL_MARGIN = 4  # pixels either side of a label


def _check_images(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise ValueError(f"{name}: expected dtype torch.uint8, got {images.dtype}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"{name}: expected shape (N, C, H, W) with C in {{1, 3}}, got {tuple(images.shape)}"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one image, got shape {tuple(images.shape)}")


def make_grid(
    images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: int = 255
) -> torch.Tensor:
    """Tile uint8 images (N, C, H, W) into one uint8 image (C, H', W'), ``nrow`` per row.

    With ``ncol = min(nrow, N)`` and ``nrows = ceil(N / ncol)``:
    ``H' = nrows * (H + padding) + padding`` and ``W' = ncol * (W + padding) + padding``.
    """
    _check_images(images)
    if nrow < 1:
        raise ValueError(f"nrow: expected >= 1, got {nrow}")
    if padding < 0:
        raise ValueError(f"padding: expected >= 0, got {padding}")
    if not 0 <= pad_value <= 255:
        raise ValueError(f"pad_value: expected an integer in [0, 255], got {pad_value}")
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = torch.full(
        (c, nrows * (h + padding) + padding, ncol * (w + padding) + padding),
        pad_value,
        dtype=torch.uint8,
    )
    images = images.detach().cpu()
    for i in range(n):
        y = padding + (i // ncol) * (h + padding)
        x = padding + (i % ncol) * (w + padding)
        grid[:, y : y + h, x : x + w] = images[i]
    return grid


def _to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 (C, H, W), C in {1, 3} -> PIL image in mode "L" or "RGB"."""
    if image.dtype != torch.uint8:
        raise ValueError(f"image: expected dtype torch.uint8, got {image.dtype}")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"image: expected shape (C, H, W) with C in {{1, 3}}, got {tuple(image.shape)}"
        )
    array = image.detach().cpu().permute(1, 2, 0).contiguous().numpy()
    # uint8 (H, W) infers mode "L" and (H, W, 3) mode "RGB" (the mode= argument is deprecated).
    return Image.fromarray(array[:, :, 0] if image.shape[0] == 1 else array)


def _write_png(pil: Image.Image, path: str | Path) -> Path:
    """Write ``pil`` as PNG at ``path``, atomically."""
    return write_atomically(path, lambda tmp: pil.save(tmp, format="PNG"))


def save_image(grid_or_images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write a uint8 image (C, H, W), or a batch (N, C, H, W) tiled by :func:`make_grid`, as PNG."""
    if not isinstance(grid_or_images, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor, got {type(grid_or_images).__name__}")
    image = grid_or_images
    if image.dim() == 4:
        image = make_grid(image, nrow=nrow)
    elif image.dim() != 3:
        raise ValueError(
            f"expected shape (C, H, W) or (N, C, H, W), got {tuple(grid_or_images.shape)}"
        )
    return _write_png(_to_pil(image), path)


def save_rows(
    rows: list[torch.Tensor], path: str | Path, labels: list[str] | None = None
) -> Path:
    """Write rows of uint8 images (each (n_i, C, H, W), same C, H, W) as one PNG, one row each.

    Shorter rows are filled with blank images. With ``labels``, each label is drawn at the left of
    its row (PIL's default font) in a margin as wide as the longest label.
    Used for temperature sweeps (a row per temperature) and interpolations (a row per pair).
    """
    if not rows:
        raise ValueError("rows: expected at least one row, got an empty list")
    for i, row in enumerate(rows):
        _check_images(row, f"rows[{i}]")
    ref = tuple(rows[0].shape[1:])
    for i, row in enumerate(rows):
        if tuple(row.shape[1:]) != ref:
            raise ValueError(
                f"rows[{i}]: expected images of shape (C, H, W) = {ref} like rows[0], "
                f"got {tuple(row.shape[1:])}"
            )
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"labels: expected {len(rows)} (one per row), got {len(labels)}")

    longest = max(row.shape[0] for row in rows)
    c, h, w = ref
    padded = []
    for row in rows:
        row = row.detach().cpu()
        if row.shape[0] < longest:
            blank = torch.full((longest - row.shape[0], c, h, w), _PAD_VALUE, dtype=torch.uint8)
            row = torch.cat([row, blank])
        padded.append(row)
    grid = make_grid(torch.cat(padded), nrow=longest, padding=_ROW_PADDING, pad_value=_PAD_VALUE)
    pil = _to_pil(grid)
    if labels is None:
        return _write_png(pil, path)

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(pil)
    boxes = [measure.textbbox((0, 0), label, font=font) for label in labels]
    margin = max(box[2] - box[0] for box in boxes) + 2 * _LABEL_MARGIN
    white = 255 if pil.mode == "L" else (255, 255, 255)
    black = 0 if pil.mode == "L" else (0, 0, 0)
    canvas = Image.new(pil.mode, (pil.width + margin, pil.height), white)
    canvas.paste(pil, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (label, box) in enumerate(zip(labels, boxes)):
        row_top = _ROW_PADDING + i * (h + _ROW_PADDING)
        y = row_top + (h - (box[3] - box[1])) / 2 - box[1]
        draw.text((_LABEL_MARGIN - box[0], y), label, fill=black, font=font)
    return _write_png(canvas, path)
