"""Whole-split evaluation: bits/dim, NLL, importance-sampled likelihood, accuracy and FID; every
function counts non-finite examples instead of dropping them."""

from flowforge.evaluation.bits_per_dim import evaluate_bpd
from flowforge.evaluation.fid import fid_from_features, frechet_distance
from flowforge.evaluation.importance import evaluate_importance
from flowforge.evaluation.nll import evaluate_nll

__all__ = ["evaluate_bpd", "evaluate_importance", "evaluate_nll", "fid_from_features", "frechet_distance"]
