"""Invertible layers sharing one contract: forward/inverse -> (output, logabsdet per example)."""

from flowforge.bijections.actnorm import ActNorm, data_dependent_init, is_initialized
from flowforge.bijections.base import Bijection, Chain, Inverse
from flowforge.bijections.coupling import AdditiveCoupling, AffineCoupling
from flowforge.bijections.permutations import (
    InvertibleConv1x1,
    InvertibleConv1x1LU,
    ReversePermutation,
    ShufflePermutation,
)
from flowforge.bijections.reshape import Squeeze
from flowforge.bijections.scale_functions import SCALE_FUNCTIONS

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Bijection",
    "Chain",
    "Inverse",
    "InvertibleConv1x1",
    "InvertibleConv1x1LU",
    "ReversePermutation",
    "SCALE_FUNCTIONS",
    "ShufflePermutation",
    "Squeeze",
    "data_dependent_init",
    "is_initialized",
]
