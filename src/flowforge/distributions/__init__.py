"""Base densities of flows, one small interface (`Distribution`: log_prob, sample,
sample_and_log_prob, optionally conditional on a context)."""

from flowforge.distributions.base import Distribution, refuse_context
from flowforge.distributions.concatenated import Concatenated
from flowforge.distributions.conditional_gaussian import ConditionalDiagGaussian
from flowforge.distributions.conditional_normal import ConditionalDiagonalGaussian
from flowforge.distributions.glow_priors import TopPrior
from flowforge.distributions.mixture import GaussianMixture
from flowforge.distributions.normal import DiagonalGaussian, StandardNormal

__all__ = ["Concatenated", "ConditionalDiagGaussian", "ConditionalDiagonalGaussian", "DiagonalGaussian", "Distribution",
           "GaussianMixture", "StandardNormal", "TopPrior", "refuse_context"]
