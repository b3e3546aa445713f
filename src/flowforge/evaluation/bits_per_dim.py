"""Bits/dim of a trained image model over a whole data split.

Every example counts: if any example's bits/dim is NaN or infinite, `evaluate_bpd` raises
NonFiniteError saying how many (never drops them). With `samples` S > 1 dequantisation draws,
each example's log-likelihood is log(1/S * sum_s p(x + u_s)), an importance-weighted bound on
the discrete log-probability that tightens with S (S = 1 is the usual single-draw figure).
"""

from __future__ import annotations

import math

import torch

from flowforge.data.images import ImageSplit
from flowforge.evaluation.summary import summarise
from flowforge.objectives.bits_per_dim import bits_per_dim
from flowforge.progress import progress_bar


@torch.no_grad()
def per_example_bpd(model, split: ImageSplit, batch_size: int = 500, samples: int = 1, seed: int = 0,
                    device: torch.device | str = "cpu", progress: bool = False, desc: str = "eval") -> torch.Tensor:
    """Bits/dim of every example of `split`, in order, as a float64 CPU tensor of length N.

    Reproducible for a given seed: the dequantisation noise comes from a seeded generator, and a
    model whose log_prob draws from torch's global generator (the VAE-flow's one-sample ELBO)
    draws from a forked global state seeded with `seed` (the caller's global state is untouched)."""
    model.eval()
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = []
    starts = range(0, len(split), batch_size)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in progress_bar(starts, desc=desc, disable=not progress, leave=False):
            images = split.images[start : start + batch_size].to(device)
            labels = split.labels[start : start + batch_size].to(device)
            # the labels of a class-conditional model, the context rows of a context-conditioned one
            conditional = getattr(model, "num_classes", 0) > 0 or getattr(model, "context_dim", 0) > 0
            context = labels if conditional else None
            draws = torch.stack([model.log_prob(model.prepare(images, generator), context) for _ in range(samples)])
            log_p = torch.logsumexp(draws.double(), dim=0) - math.log(samples)
            out.append(bits_per_dim(log_p, model.num_dims, model.n_bits).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


def evaluate_bpd(model, split: ImageSplit, what: str = "split", **kwargs) -> dict:
    """Mean bits/dim of `split` (see per_example_bpd for the keyword arguments)."""
    return summarise(per_example_bpd(model, split, **kwargs), what, "bpd")
