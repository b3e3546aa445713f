"""Mean and standard error of a per-example metric; non-finite examples are counted and refused,
never dropped."""

from __future__ import annotations

import math

import torch

from flowforge.errors import NonFiniteError

METRIC_NAMES = {"bpd": "bits/dim", "nll": "NLL (nats per example)", "accuracy": "accuracy",
                "neg_elbo": "negative ELBO (nats: reverse KL - log Z)"}
# what a model's log_prob is (FlowModel.log_prob_kind), said beside every figure computed from it
LOG_PROB_KINDS = {
    "exact": "exact log-likelihood",
    "elbo": "from the ELBO: a bound (bits/dim and NLL are upper bounds)",
    "importance-sampled": "importance-sampled estimate (a bound in expectation that tightens with K)",
    "roulette-estimate": "log-dets by the unbiased Russian-roulette estimator (random, not exact)",
}


def summarise(values: torch.Tensor, what: str, metric: str) -> dict:
    """{metric: mean, metric_std_err: standard error, "examples": N}; NonFiniteError naming how
    many examples were NaN or infinite."""
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise NonFiniteError(f"{what}: {bad} of {len(values)} examples have non-finite {metric}; "
                             "no figure is reported (they are not dropped)")
    n = len(values)
    std_err = float(values.std() / math.sqrt(n)) if n > 1 else float("nan")
    return {metric: float(values.mean()), f"{metric}_std_err": std_err, "examples": n}
