"""Smoke and property tests of the toy-regression and gradient-angle studies (tiny sizes)."""

from __future__ import annotations

import torch

from flowforge.data.images import ImageSplit
from flowforge.experiments import gradient_angles, toy_regression


def test_toy_regression_data_follow_eq_13_14():
    x, y = toy_regression.toy_regression_data(4000, seed=1)
    assert x.shape == y.shape == (4000, 2)
    torch.testing.assert_close(y[:, 1], x[:, 1])  # (x2, y2) has covariance [[1, 1], [1, 1]]
    assert y[:, 0].abs().max() < 1e-10  # y1 has variance 1e-24
    assert 0.9 < x.std(0).min() and x.std(0).max() < 1.1


def test_toy_regression_reproduce_writes_table_and_figure(tmp_path):
    table = toy_regression.reproduce(tmp_path, steps=4, eval_every=2, n=64, blocks=1, progress=False)
    assert table.count("\n| ") == 3 + 1  # header + three models
    assert (tmp_path / "toy_regression.png").stat().st_size > 0
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert len(lines) == 1 + 3 * 2  # two evaluations per model


def test_gradient_angle_variant_on_random_images():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 1, 8, 8), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (96,), generator=gen)
    data = ImageSplit(images, labels)
    old = dict(gradient_angles.MODEL)
    gradient_angles.MODEL.update(levels=1, depth=2, hidden=8, fd_every=1)
    try:
        result = gradient_angles.run_variant("affine", "fd", data, data, steps=2, lr=1e-3, batch_size=16,
                                             angle_every=1, angle_batches=2, progress=False)
    finally:
        gradient_angles.MODEL.clear()
        gradient_angles.MODEL.update(old)
    assert [h["step"] for h in result["history"]] == [0, 1, 2]
    for h in result["history"]:
        assert h["non_finite_batches"] == 0 and 0 <= h["angle_deg"] < 1.0  # float32, stable at init
    assert result["memory_saving_training"] and result["skipped_steps"] == 0
    assert result["examples"] == 96 and result["non_finite"] == 0 and 0 <= result["accuracy"] <= 1


def test_cli_lists_the_new_studies():
    from flowforge.cli import build_parser

    parser = build_parser()
    for name in ("toy-regression", "gradient-angle"):
        assert parser.parse_args(["reproduce", name]).name == name
