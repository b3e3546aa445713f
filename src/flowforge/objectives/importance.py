"""The importance-sampling estimate of log p(x) for models trained by an ELBO (Rezende et al.
2014, appendix E; LGF paper §5 and NOTES b.5; the IWAE bound of Burda et al. 2016):

    log p^(x) = logsumexp_k ELBO_k(x) - log K,      ELBO_k: one-sample ELBOs, u ~ q drawn afresh

It is a lower bound on log p(x) in expectation, >= the mean ELBO for every draw (Jensen), and
tends to log p(x) as K grows. The K samples go through the model in chunks of whole copies of
the batch, at most `max_rows` rows per pass, so K = 1000 fits in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def elbo_samples(elbo_fn: Callable[[Tensor], Tensor], x: Tensor, samples: int, max_rows: int = 100_000) -> Tensor:
    """(K, B) float64 one-sample ELBOs of every example of x (B, ...), K = `samples`."""
    if samples < 1:
        raise ValueError(f"the number of importance samples must be positive, got {samples}")
    batch = x.shape[0]
    per_pass = max(1, min(samples, max_rows // max(batch, 1)))
    out = []
    done = 0
    while done < samples:
        k = min(per_pass, samples - done)
        rows = x.repeat(k, *([1] * (x.dim() - 1)))  # copy-major: row k * B + b is example b
        out.append(elbo_fn(rows).double().view(k, batch))
        done += k
    return torch.cat(out)


def importance_log_likelihood(elbos: Tensor) -> Tensor:
    """logsumexp over the K rows of a (K, B) ELBO tensor minus log K -> (B,)."""
    return torch.logsumexp(elbos, dim=0) - math.log(elbos.shape[0])
