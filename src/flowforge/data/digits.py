"""scikit-learn's bundled digits (1,797 8x8 images, integer values 0..16) as a 64-dimensional
tabular benchmark that needs no download.

Split: a permutation drawn from ``numpy.random.RandomState(seed)`` gives 1,257 train / 180 valid /
360 test examples (70 / 10 / 20 %), in that order of the permutation.

Dequantisation: x = (v + u) / 17 with u ~ U(0, 1)^64. The noise is drawn once, at load: the train
noise from one seeded stream, the valid and test noise from another, so that the same seed gives
the same arrays and figures are comparable across runs and models. The log-likelihood a model
reports on these arrays is the continuous density of the dequantised data on [0, 1]^64; the
log-probability of the discrete values is bounded below by it plus 64 log(1/17)
(`digits_discrete_log_likelihood`), so reports can state both.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from flowforge.data.arrays import ArraySplits

__all__ = [
    "DIGITS_DIM",
    "DIGITS_LEVELS",
    "DIGITS_SPLIT_SIZES",
    "digits_discrete_log_likelihood",
    "load_digits_splits",
]

#: Number of integer levels of a pixel (0..16).
DIGITS_LEVELS = 17
DIGITS_DIM = 64
#: train, valid, test sizes (70 / 10 / 20 % of 1,797).
DIGITS_SPLIT_SIZES = (1257, 180, 360)

# Sub-stream ids of the seeded streams (RandomState([seed, id]) is independent of RandomState(seed)).
_TRAIN_NOISE, _EVAL_NOISE = 1, 2


def digits_discrete_log_likelihood(continuous_ll: float) -> float:
    """Log-likelihood of the integer data from the continuous one of x = (v + u) / 17, per example:
    ``continuous_ll + 64 * log(1 / 17)`` (the 1/17 scaling's log-Jacobian, per pixel)."""
    return continuous_ll - DIGITS_DIM * math.log(DIGITS_LEVELS)


def load_digits_splits(seed: int = 0, dequantise: bool = True) -> ArraySplits:
    """Train / valid / test splits of the digits, float32 (N, 64) in [0, 1].

    ``dequantise=False`` places every value at the centre of its bin, (v + 0.5) / 17, instead of
    adding uniform noise.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        from flowforge.errors import MissingDependencyError

        raise MissingDependencyError("the digits data set needs scikit-learn: pip install 'flowforge[tabular]'") from None
    values = load_digits().data.astype(np.float64)
    if values.shape != (sum(DIGITS_SPLIT_SIZES), DIGITS_DIM):
        raise RuntimeError(f"sklearn digits: expected shape {(sum(DIGITS_SPLIT_SIZES), DIGITS_DIM)}, "
                           f"got {values.shape}")
    order = np.random.RandomState(seed).permutation(len(values))
    n_train, n_valid, _ = DIGITS_SPLIT_SIZES
    parts = [values[order[:n_train]], values[order[n_train : n_train + n_valid]], values[order[n_train + n_valid :]]]
    if dequantise:
        train_rng = np.random.RandomState([seed, _TRAIN_NOISE])
        eval_rng = np.random.RandomState([seed, _EVAL_NOISE])
        noise = [train_rng.rand(*parts[0].shape), eval_rng.rand(*parts[1].shape), eval_rng.rand(*parts[2].shape)]
    else:
        noise = [0.5, 0.5, 0.5]
    # (16 + u) / 17 can round up to 1.0 in float32; keep every value strictly below 1
    top = np.nextafter(np.float32(1), np.float32(0))
    out = [np.minimum(((v + u) / DIGITS_LEVELS).astype(np.float32), top) for v, u in zip(parts, noise)]
    return ArraySplits("digits", *(torch.from_numpy(a) for a in out))
