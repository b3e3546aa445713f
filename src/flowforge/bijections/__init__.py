"""Invertible layers sharing one contract: forward/inverse -> (output, logabsdet per example)."""

from flowforge.bijections.actnorm import ActNorm, data_dependent_init, is_initialized
from flowforge.bijections.autoregressive import MAFStep
from flowforge.bijections.base import Bijection, Chain, Inverse, Unconditional
from flowforge.bijections.coupling import AdditiveCoupling, AffineCoupling
from flowforge.bijections.elementwise import BatchNormFlow, Logit
from flowforge.bijections.householder import Householder
from flowforge.bijections.masked_coupling import MaskedAffineCoupling
from flowforge.bijections.permutations import (
    InvertibleConv1x1,
    InvertibleConv1x1LU,
    ReversePermutation,
    ShufflePermutation,
)
from flowforge.bijections.planar import Planar
from flowforge.bijections.radial import Radial
from flowforge.bijections.rational_quadratic import RationalQuadraticSpline
from flowforge.bijections.reshape import Squeeze
from flowforge.bijections.residual import ResidualBlock
from flowforge.bijections.scale_functions import SCALE_FUNCTIONS
from flowforge.bijections.spline_autoregressive import SplineAutoregressive
from flowforge.bijections.spline_coupling import SplineCoupling

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "BatchNormFlow",
    "Bijection",
    "Chain",
    "Inverse",
    "Unconditional",
    "InvertibleConv1x1",
    "InvertibleConv1x1LU",
    "Logit",
    "MAFStep",
    "MaskedAffineCoupling",
    "ReversePermutation",
    "SCALE_FUNCTIONS",
    "ShufflePermutation",
    "Squeeze",
    "data_dependent_init",
    "is_initialized",
]
__all__ += ["ResidualBlock"]  # residual flows
__all__ += ["Householder", "Planar", "Radial"]  # variational-inference flows
__all__ += ["RationalQuadraticSpline", "SplineAutoregressive", "SplineCoupling"]  # neural spline flows
