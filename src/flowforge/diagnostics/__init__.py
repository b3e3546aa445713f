"""Stability diagnostics of invertible models (Behrmann et al. 2021): reconstruction errors,
Jacobian spectra and condition numbers, log-det checks, encode/decode drift, the invertibility
attack and out-of-distribution probes."""

from flowforge.diagnostics.jacobian import jacobian_singular_values, singular_value_extremes
from flowforge.diagnostics.maps import invertible_map
from flowforge.diagnostics.reconstruction import error_summary, reconstruction_errors

__all__ = [
    "error_summary",
    "invertible_map",
    "jacobian_singular_values",
    "reconstruction_errors",
    "singular_value_extremes",
]
