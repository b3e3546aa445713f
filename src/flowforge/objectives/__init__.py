"""Training objectives: bits/dim against the discrete data, the localised-flow ELBO and its
importance-sampled likelihood, and the stability regularisers."""

from flowforge.objectives.bits_per_dim import bits_per_dim, discretisation_nats
from flowforge.objectives.importance import elbo_samples, importance_log_likelihood
from flowforge.objectives.regularisers import finite_difference_penalty, flow_nll_penalty

__all__ = ["bits_per_dim", "discretisation_nats", "elbo_samples", "finite_difference_penalty", "flow_nll_penalty",
           "importance_log_likelihood"]
