"""scikit-learn's bundled digits (1,797 8x8 images, values 0..16) as a 64-dimensional tabular
benchmark that is available offline.

Split: a seeded permutation gives 1,257 train / 180 valid / 360 test (70 / 10 / 20 %).
Dequantisation: x = (v + u) / 17 with u ~ U(0, 1) drawn once at load from seeded streams (so
figures are comparable across runs); the reported log-likelihood is the continuous density of
x on [0, 1]^64. The log-probability of the discrete values is that minus 64 log 17
(`digits_discrete_log_likelihood`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from flowforge.data.arrays import ArraySplits

DIGITS_LEVELS = 17
DIGITS_DIM = 64
SPLIT_SIZES = (1257, 180, 360)


def digits_discrete_log_likelihood(continuous_ll: float) -> float:
    """log P(v) of the integer data from the continuous log-density of x = (v + u) / 17."""
    return continuous_ll - DIGITS_DIM * math.log(DIGITS_LEVELS)


def load_digits_splits(seed: int = 0, dequantise: bool = True) -> ArraySplits:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits benchmark needs scikit-learn: pip install 'flowforge[tabular]'") from None
    values = load_digits().data.astype(np.float64)
    order = np.random.RandomState(seed).permutation(len(values))
    bounds = np.cumsum((0,) + SPLIT_SIZES)
    parts = []
    for k in range(3):
        v = values[order[bounds[k] : bounds[k + 1]]]
        noise = np.random.RandomState(seed * 3 + k + 1).rand(*v.shape) if dequantise else 0.5
        parts.append(torch.from_numpy(((v + noise) / DIGITS_LEVELS).astype(np.float32)))
    return ArraySplits("digits", *parts)
