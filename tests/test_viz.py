"""Image grids and PNG output: shape arithmetic, pixel placement, validation, labelled rows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flowforge.viz import make_grid, save_image, save_rows


def _images(n: int, c: int = 3, h: int = 4, w: int = 5) -> torch.Tensor:
    """Image i is filled with the value 10 * (i + 1), so its position in a grid is checkable."""
    values = torch.arange(1, n + 1, dtype=torch.uint8) * 10
    return values.view(n, 1, 1, 1).expand(n, c, h, w).contiguous()


@pytest.mark.parametrize(
    ("n", "nrow", "padding", "expected"),
    [
        (1, 8, 2, (3, 4 + 4, 5 + 4)),
        (8, 8, 2, (3, 1 * 6 + 2, 8 * 7 + 2)),
        (10, 4, 2, (3, 3 * 6 + 2, 4 * 7 + 2)),
        (3, 8, 2, (3, 6 + 2, 3 * 7 + 2)),  # fewer images than nrow: columns shrink
        (6, 3, 0, (3, 2 * 4, 3 * 5)),
    ],
)
def test_make_grid_shape(n: int, nrow: int, padding: int, expected: tuple[int, ...]) -> None:
    grid = make_grid(_images(n), nrow=nrow, padding=padding)
    assert grid.dtype == torch.uint8
    assert tuple(grid.shape) == expected


def test_make_grid_places_images_and_padding() -> None:
    grid = make_grid(_images(5, c=1), nrow=2, padding=1, pad_value=7)
    # 3 rows x 2 columns of 4x5 images, 1 px padding: H' = 3*5+1, W' = 2*6+1.
    assert tuple(grid.shape) == (1, 16, 13)
    for i in range(5):
        y, x = 1 + (i // 2) * 5, 1 + (i % 2) * 6
        assert torch.all(grid[:, y : y + 4, x : x + 5] == 10 * (i + 1))
    assert grid[0, 0, 0] == 7 and grid[0, 5, 3] == 7
    assert torch.all(grid[:, 11:15, 7:12] == 7)  # the empty sixth cell is padding


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (torch.zeros(2, 3, 4, 4), "torch.uint8"),
        (torch.zeros(3, 4, 4, dtype=torch.uint8), "(N, C, H, W)"),
        (torch.zeros(2, 2, 4, 4, dtype=torch.uint8), "(2, 2, 4, 4)"),
        (torch.zeros(0, 3, 4, 4, dtype=torch.uint8), "at least one"),
    ],
)
def test_make_grid_rejects_bad_input(bad: torch.Tensor, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        make_grid(bad)
    assert needle in str(info.value)


def test_make_grid_error_names_expected_and_actual_dtype() -> None:
    with pytest.raises(ValueError, match=r"expected dtype torch\.uint8, got torch\.float32"):
        make_grid(torch.zeros(2, 3, 4, 4))


def test_save_image_rgb_batch(tmp_path: Path) -> None:
    images = _images(3)
    images[1, :, 0, 0] = torch.tensor([255, 0, 128], dtype=torch.uint8)
    path = save_image(images, tmp_path / "sub" / "dir" / "grid.png", nrow=2)
    assert path == tmp_path / "sub" / "dir" / "grid.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == (2 * 7 + 2, 2 * 6 + 2)  # (W', H')
        pixels = np.asarray(im)
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # padding
    assert tuple(pixels[2, 2]) == (10, 10, 10)  # image 0 top-left
    assert tuple(pixels[2, 2 + 7]) == (255, 0, 128)  # image 1 top-left, the marked pixel
    assert tuple(pixels[2 + 6 + 3, 2 + 4]) == (30, 30, 30)  # image 2, second row
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temp file left


def test_save_image_grayscale_single(tmp_path: Path) -> None:
    image = torch.arange(12, dtype=torch.uint8).view(1, 3, 4)
    path = save_image(image, tmp_path / "one.png")
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (4, 3)
        np.testing.assert_array_equal(np.asarray(im), image[0].numpy())


def test_save_image_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="torch.uint8"):
        save_image(torch.zeros(3, 4, 4), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        save_image(torch.zeros(4, 4, dtype=torch.uint8), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_save_rows_pads_short_rows(tmp_path: Path) -> None:
    rows = [_images(3, c=1), _images(1, c=1), _images(2, c=1)]
    path = save_rows(rows, tmp_path / "rows.png")
    with Image.open(path) as im:
        assert im.mode == "L"
        assert im.size == (3 * 7 + 2, 3 * 6 + 2)
        pixels = np.asarray(im)
    assert pixels[2, 2 + 2 * 7] == 30  # row 0, third image
    assert pixels[2 + 6, 2] == 10  # row 1, first image
    assert pixels[2 + 6, 2 + 7] == 255  # row 1, blank filler
    assert pixels[2 + 12, 2 + 7] == 20  # row 2, second image


def test_save_rows_labels_widen_image(tmp_path: Path) -> None:
    rows = [_images(4, h=8, w=8), _images(4, h=8, w=8)]
    plain = save_rows(rows, tmp_path / "plain.png")
    labelled = save_rows(rows, tmp_path / "labelled.png", labels=["T=0.5", "T=1.0 (long label)"])
    short = save_rows(rows, tmp_path / "short.png", labels=["a", "b"])
    with Image.open(plain) as a, Image.open(labelled) as b, Image.open(short) as c:
        assert a.height == b.height == c.height
        assert b.width > c.width > a.width
        # The grid sits unchanged at the right of the label margin.
        margin = b.width - a.width
        np.testing.assert_array_equal(np.asarray(b)[:, margin:], np.asarray(a))
        # Something was drawn in the margin (dark text on white).
        assert np.asarray(b)[:, :margin].min() < 128


def test_save_rows_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        save_rows([], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"rows\[1\].*\(3, 4, 5\).*\(3, 4, 6\)"):
        save_rows([_images(2), _images(2, w=6)], tmp_path / "x.png")
    with pytest.raises(ValueError, match="expected 2"):
        save_rows([_images(2), _images(2)], tmp_path / "x.png", labels=["only one"])
    with pytest.raises(ValueError, match=r"rows\[0\].*torch\.uint8"):
        save_rows([torch.zeros(2, 3, 4, 5)], tmp_path / "x.png")


def test_figures_are_written_atomically_with_ordinary_permissions(tmp_path):
    from flowforge.viz.atomic_file import write_atomically

    old_umask = os.umask(0o022)
    try:
        path = save_image(_images(2), tmp_path / "sub" / "grid.png")
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert Image.open(path).size[0] > 0

    def failing(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_atomically(path, failing)
    assert Image.open(path).size[0] > 0  # the old file survives
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary left behind
