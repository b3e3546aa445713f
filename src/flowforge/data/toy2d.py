"""Generated 2-D toy data sets of the LGF paper (Cornish et al. 2020, figures 1 and 4, appendix C.1).

The generators follow the public LGF / CIF code (`datasets/two_d.py: get_2d_data`, itself adapted
from the invertible-resnet / FFJORD `toy_data.py`); see NOTES-from-public-code.md section b.6.
They draw from a numpy ``Generator`` seeded by the caller, so a (name, n, seed) triple always gives
the same array, whereas the public code draws from the global RNG at every run.

Sizes as in the public code: 10 000 training, 1 000 validation and 5 000 test points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from flowforge.data.arrays import ArraySplits

__all__ = ["TOY_DATASETS", "load_toy_splits", "sample_toy"]

_SPLITS = ("train", "valid", "test")


def _two_uniforms(n: int, rng: np.random.Generator) -> np.ndarray:
    """The LGF paper's "2uniforms" (figure 1): x1 ~ U[-2, -1] or U[1, 2] with equal odds, x2 ~ U[-1, 1]."""
    c = rng.integers(0, 2, size=n).astype(np.float64)  # c ~ Bern(0.5)
    x1 = rng.random(n) + c - 2.0 * (1.0 - c)
    x2 = 2.0 * (rng.random(n) - 0.5)
    return np.stack([x1, x2], axis=1)


# The eight unit directions of "8gaussians", in the public code's order.
_SQ2 = 1.0 / np.sqrt(2.0)
EIGHT_GAUSSIAN_DIRECTIONS = np.array(
    [(1, 0), (-1, 0), (0, 1), (0, -1), (_SQ2, _SQ2), (-_SQ2, _SQ2), (_SQ2, -_SQ2), (-_SQ2, -_SQ2)]
)
EIGHT_GAUSSIAN_SCALE = 4.0
EIGHT_GAUSSIAN_STD = 0.5
EIGHT_GAUSSIAN_DIVISOR = 1.414  # the public code divides by 1.414, not sqrt(2)


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    """Centres 4·(eight unit directions) + 0.5·N(0, I), all divided by 1.414."""
    centres = EIGHT_GAUSSIAN_SCALE * EIGHT_GAUSSIAN_DIRECTIONS
    pick = rng.integers(0, len(centres), size=n)
    return (centres[pick] + EIGHT_GAUSSIAN_STD * rng.standard_normal((n, 2))) / EIGHT_GAUSSIAN_DIVISOR


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    """x1 = 4U − 2; x2 = U − 2·randint{0,1} + (floor(x1) mod 2); data = 2·[x1, x2].

    The points fill the 8 squares of side 2 in [-4, 4]² whose indices (floor(x/2) + floor(y/2)) are even.
    """
    x1 = 4.0 * rng.random(n) - 2.0
    x2 = rng.random(n) - 2.0 * rng.integers(0, 2, size=n) + np.floor(x1) % 2
    return 2.0 * np.stack([x1, x2], axis=1)


def _two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    """t = sqrt(U)·540·2π/360; arm d = (−cos(t)·t + U/2, sin(t)·t + U/2); stack(d, −d)/3 + 0.1·N(0, I).

    For odd ``n`` the first arm has one point more (the public code returns 2·(n // 2) points).
    """
    m = n - n // 2
    t = np.sqrt(rng.random(m)) * 540.0 * (2.0 * np.pi) / 360.0
    d1 = np.stack([-np.cos(t) * t + 0.5 * rng.random(m), np.sin(t) * t + 0.5 * rng.random(m)], axis=1)
    x = np.concatenate([d1, -d1[: n // 2]], axis=0) / 3.0
    return x + 0.1 * rng.standard_normal((n, 2))


def _rings(n: int, rng: np.random.Generator) -> np.ndarray:
    """Four concentric circles of radii 3, 2.25, 1.5, 0.75 (i.e. (1, .75, .5, .25)·3) at equally spaced
    angles, shuffled, + 0.08·N(0, I). The innermost circle takes the remainder n − 3·(n // 4)."""
    n4 = n3 = n2 = n // 4
    n1 = n - n4 - n3 - n2
    lin4, lin3, lin2, lin1 = (np.linspace(0.0, 2.0 * np.pi, k, endpoint=False) for k in (n4, n3, n2, n1))
    # QUIRK kept from the public code: circle 3's x-coordinates use circle 4's angles (lin4, not lin3).
    # Both have n // 4 equally spaced angles, so the points are the same; the quirk only matters if
    # the circles ever got different sizes.
    xs = np.concatenate([np.cos(lin4), np.cos(lin4) * 0.75, np.cos(lin2) * 0.5, np.cos(lin1) * 0.25])
    ys = np.concatenate([np.sin(lin4), np.sin(lin3) * 0.75, np.sin(lin2) * 0.5, np.sin(lin1) * 0.25])
    x = np.stack([xs, ys], axis=1) * 3.0
    x = x[rng.permutation(n)]
    return x + 0.08 * rng.standard_normal((n, 2))


TWO_MOONS_CENTRE = np.array([0.5, 0.25])  # mean of the noise-free moons
TWO_MOONS_SCALE = 2.0


def _two_moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two interleaving half circles (not in the LGF code; the scikit-learn ``make_moons`` construction).

    Outer moon (cos t, sin t), inner moon (1 − cos t, 1 − sin t − 0.5), t ~ U(0, π), each point in
    either moon with probability 1/2, + 0.1·N(0, I); then centred by (0.5, 0.25) and scaled by 2
    (isotropic, so the moons stay circular): per-axis std ≈ (1.7, 1.0), inside [-3.5, 3.5] × [-2, 2].
    """
    t = np.pi * rng.random(n)
    inner = rng.integers(0, 2, size=n).astype(bool)
    x = np.stack([np.cos(t), np.sin(t)], axis=1)
    x[inner] = np.stack([1.0 - np.cos(t[inner]), 1.0 - np.sin(t[inner]) - 0.5], axis=1)
    x = x + 0.1 * rng.standard_normal((n, 2))
    return TWO_MOONS_SCALE * (x - TWO_MOONS_CENTRE)


_GENERATORS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "two-uniforms": _two_uniforms,
    "eight-gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "two-spirals": _two_spirals,
    "rings": _rings,
    "two-moons": _two_moons,
}
TOY_DATASETS: tuple[str, ...] = tuple(_GENERATORS)


def _generate(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    try:
        generator = _GENERATORS[name]
    except KeyError:
        raise ValueError(f"unknown 2-D toy data set {name!r}; expected one of {list(TOY_DATASETS)}") from None
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name}: the number of points must be a positive integer, got {n!r}")
    return np.ascontiguousarray(generator(int(n), rng), dtype=np.float32)


def sample_toy(name: str, n: int, seed: int) -> np.ndarray:
    """``n`` points of the 2-D toy set ``name`` as float32 (n, 2), a deterministic function of ``seed``."""
    return _generate(name, n, np.random.default_rng(seed))


def load_toy_splits(name: str, seed: int = 0, n_train: int = 10_000, n_valid: int = 1_000,
                    n_test: int = 5_000) -> ArraySplits:
    """Train / validation / test splits of ``name`` (LGF sizes 10k / 1k / 5k by default).

    Each split comes from its own stream, seeded by the pair (seed, split index), so the splits are
    independent and changing one split's size leaves the others unchanged.
    """
    sizes = (n_train, n_valid, n_test)
    arrays = [_generate(name, k, np.random.default_rng([seed, i])) for i, k in enumerate(sizes)]
    return ArraySplits(name, *(torch.from_numpy(a) for a in arrays))
