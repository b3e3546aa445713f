"""The 2-D toy data sets (LGF paper figures 1 and 4; public-code construction, notes b.6):
seeding, split sizes, dtype, and the geometry each construction promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowforge.data.arrays import ArraySplits
from flowforge.data.toy2d import TOY_DATASETS, load_toy_splits, sample_toy


def test_every_registered_toy_set_has_a_generator() -> None:
    from flowforge.data.registry import DATASET_KINDS

    assert set(TOY_DATASETS) == {name for name, kind in DATASET_KINDS.items() if kind == "toy2d"}


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_splits_are_seeded_sized_float32_and_finite(name: str) -> None:
    a, b, c = (load_toy_splits(name, seed=s) for s in (0, 0, 1))
    assert isinstance(a, ArraySplits) and a.name == name and a.dim == 2
    assert (len(a.train), len(a.valid), len(a.test)) == (10_000, 1_000, 5_000)
    for split in ("train", "valid", "test"):
        x = a.split(split)
        assert x.dtype == torch.float32 and bool(torch.isfinite(x).all())
        assert torch.equal(x, b.split(split))  # same seed, same data
        assert not torch.equal(x, c.split(split))  # another seed, other data
    # the splits come from independent streams: not prefixes of one another
    assert not torch.equal(a.train[:1_000], a.valid)
    assert not torch.equal(a.train[:5_000], a.test)
    assert not torch.equal(a.valid, a.test[:1_000])


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_sample_toy_is_a_function_of_the_seed(name: str) -> None:
    x = sample_toy(name, 1_001, seed=7)  # odd n on purpose
    assert x.shape == (1_001, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert np.array_equal(x, sample_toy(name, 1_001, seed=7))
    assert not np.array_equal(x, sample_toy(name, 1_001, seed=8))


def test_split_sizes_do_not_change_the_other_splits() -> None:
    a = load_toy_splits("checkerboard", seed=3)
    b = load_toy_splits("checkerboard", seed=3, n_valid=10)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test) and len(b.valid) == 10


def test_two_uniforms_lies_on_two_rectangles() -> None:
    x = load_toy_splits("two-uniforms").train.numpy()
    x1, x2 = x[:, 0], x[:, 1]
    assert (((x1 >= -2) & (x1 <= -1)) | ((x1 >= 1) & (x1 <= 2))).all()
    assert ((x2 >= -1) & (x2 <= 1)).all()
    assert 0.47 < (x1 > 0).mean() < 0.53  # c ~ Bern(0.5)


def test_checkerboard_fills_only_the_black_squares() -> None:
    x = load_toy_splits("checkerboard").train.numpy().astype(np.float64) / 2  # undo the final x2
    assert ((x >= -2) & (x <= 2)).all()
    # float32 rounding may put a point drawn just below a grid line onto it; skip those few
    clear = (np.abs(x - np.round(x)) > 1e-5).all(axis=1)
    assert clear.mean() > 0.999
    i, j = np.floor(x[clear, 0]), np.floor(x[clear, 1])
    assert ((i + j) % 2 == 0).all()  # floor(x1) even -> x2 in [0,1) or [-2,-1); odd -> [1,2) or [-1,0)
    counts = np.unique(np.stack([i, j], axis=1), axis=0, return_counts=True)[1]
    assert len(counts) == 8 and (np.abs(counts / clear.sum() - 1 / 8) < 0.02).all()


def test_eight_gaussians_has_eight_clusters() -> None:
    x = load_toy_splits("eight-gaussians").train.numpy().astype(np.float64)
    s = 1 / np.sqrt(2)
    centres = 4 * np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (-s, s), (s, -s), (-s, -s)]) / 1.414
    std = 0.5 / 1.414
    dist = np.linalg.norm(x[:, None, :] - centres[None], axis=2)
    nearest, which = dist.min(axis=1), dist.argmin(axis=1)
    # radial distance of a 2-D Gaussian: P(r <= 3 std) = 1 - exp(-4.5) = 0.9889
    assert abs((nearest <= 3 * std).mean() - (1 - np.exp(-4.5))) < 0.005
    assert (nearest <= 6 * std).all()
    counts = np.bincount(which, minlength=8)
    assert (np.abs(counts / len(x) - 1 / 8) < 0.02).all()


def test_rings_lie_on_four_circles() -> None:
    x = load_toy_splits("rings").train.numpy().astype(np.float64)
    radii = 3 * np.array([1.0, 0.75, 0.5, 0.25])
    gap = np.abs(np.linalg.norm(x, axis=1)[:, None] - radii[None])
    which = gap.argmin(axis=1)
    assert np.allclose(np.bincount(which, minlength=4) / len(x), 0.25, atol=0.02)
    assert abs(gap.min(axis=1).std() - 0.08 * np.sqrt(1 - 2 / np.pi)) < 0.01  # |N(0, 0.08)| spread


def test_two_spirals_are_point_symmetric_arms() -> None:
    x = load_toy_splits("two-spirals").train.numpy().astype(np.float64)
    assert np.abs(x.mean(axis=0)).max() < 0.1
    assert np.abs(x).max() < 6


def test_two_moons_is_centred_at_about_unit_scale() -> None:
    x = load_toy_splits("two-moons").train.numpy().astype(np.float64)
    assert np.abs(x.mean(axis=0)).max() < 0.05
    assert np.allclose(x.std(axis=0), [1.74, 1.01], rtol=0.05)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="three-moons.*two-moons"):
        sample_toy("three-moons", 10, seed=0)
    with pytest.raises(ValueError, match="checkerboard"):
        load_toy_splits("nope")
