"""The sample grid: rows of 8 for an unconditional model, one labelled row per class for a
class-conditional one."""

from __future__ import annotations

import torch
from PIL import Image

from flowforge.viz import image_figures


class FakeClassConditional(torch.nn.Module):
    """Samples whose every pixel is its label / 4 in model space ([-0.5, 0.5]), so rows are tellable."""

    n_bits = 8
    num_classes = 3

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.asked: list[int] = []

    def sample(self, n, temperature, context=None, generator=None):
        self.asked = context.tolist()
        return (context.float() / 4 - 0.25).view(n, 1, 1, 1).expand(n, 1, 6, 6).clone()


def test_a_class_conditional_grid_has_one_row_per_class(tmp_path):
    model = FakeClassConditional()
    path = image_figures.sample_grid(model, tmp_path / "grid.png", 5, 0.7, 0, ("top", "trouser", "bag"))
    assert model.asked == [0, 0, 1, 1, 2, 2]  # ceil(5 / 3) = 2 samples of each class
    image = Image.open(path).convert("L")
    unlabelled = image_figures.sample_grid(model, tmp_path / "plain.png", 5, 0.7, 0)
    assert image.width > Image.open(unlabelled).width  # the class names take a margin
    # the rightmost cell of each row: brightness rises with the class, row by row
    column = [image.getpixel((image.width - 5, y)) for y in range(image.height)]
    levels = sorted({v for v in column if v not in (0, 255)})
    assert len(levels) == 3
