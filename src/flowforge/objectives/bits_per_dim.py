"""Bits per dimension against the discrete data.

A model of x / 2^n (n-bit data in [0, 2^n)) has a density p on cells of volume 2^-n per
dimension, so the discrete probability is P(x) ≈ p(x) 2^(-nD) and

    bpd = (-log p(x) + D * n * log 2) / (D * log 2).

This module is the one place that constant is written.
"""

from __future__ import annotations

import math

from torch import Tensor


def discretisation_nats(num_dims: int, n_bits: int) -> float:
    """D * n * log 2: the nats added to -log p(x) for the 2^-n cell width in each of D dims."""
    return num_dims * n_bits * math.log(2)


def bits_per_dim(log_prob_nats: Tensor, num_dims: int, n_bits: int) -> Tensor:
    """Per-example bits/dim of the discrete data from the continuous log-density in nats."""
    return (-log_prob_nats + discretisation_nats(num_dims, n_bits)) / (num_dims * math.log(2))
