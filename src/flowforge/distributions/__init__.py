"""Base and conditional densities of flows."""

from flowforge.distributions.mixture import GaussianMixture

__all__ = ["GaussianMixture"]
