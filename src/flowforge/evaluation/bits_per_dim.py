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


def _class_conditional(model) -> bool:
    return getattr(model, "num_classes", 0) > 0 and hasattr(model, "log_prob_per_class")


@torch.no_grad()
def per_example_bpd(model, split: ImageSplit, batch_size: int = 500, samples: int = 1, seed: int = 0,
                    device: torch.device | str = "cpu", progress: bool = False, desc: str = "eval") -> torch.Tensor:
    """Bits/dim of every example of `split`, in order, as a float64 CPU tensor of length N: of
    p(x | label) for a conditional model. A class-conditional Glow gives (N, 2) instead, columns
    p(x | label) and the marginal p(x) = (1/K) sum_k p(x | k), from the same pass.

    Reproducible for a given seed: the dequantisation noise comes from a seeded generator, and a
    model whose log_prob draws from torch's global generator (the VAE-flow's one-sample ELBO)
    draws from a forked global state seeded with `seed` (the caller's global state is untouched)."""
    model.eval()
    by_class = _class_conditional(model)
    # the labels of a class-conditional model, the context rows of a context-conditioned one
    conditional = getattr(model, "num_classes", 0) > 0 or getattr(model, "context_dim", 0) > 0
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = []
    starts = range(0, len(split), batch_size)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in progress_bar(starts, desc=desc, disable=not progress, leave=False):
            images = split.images[start : start + batch_size].to(device)
            labels = split.labels[start : start + batch_size].to(device)
            if by_class:  # (S, B, K): log p(x + u_s | k)
                draws = torch.stack([model.log_prob_per_class(model.prepare(images, generator))
                                     for _ in range(samples)]).double()
                given = torch.logsumexp(draws[:, torch.arange(len(labels)), labels.long()], dim=0)
                marginal = torch.logsumexp(draws, dim=(0, 2)) - math.log(draws.shape[2])
                log_p = torch.stack([given, marginal], dim=1) - math.log(samples)
            else:
                context = labels if conditional else None
                draws = torch.stack([model.log_prob(model.prepare(images, generator), context) for _ in range(samples)])
                log_p = torch.logsumexp(draws.double(), dim=0) - math.log(samples)
            out.append(bits_per_dim(log_p, model.num_dims, model.n_bits).cpu())
    return torch.cat(out) if out else torch.empty((0, 2) if by_class else (0,), dtype=torch.float64)


def evaluate_bpd(model, split: ImageSplit, what: str = "split", **kwargs) -> dict:
    """Mean bits/dim of `split` (see per_example_bpd for the keyword arguments). A class-conditional
    Glow's figure is that of the marginal p(x), comparable with any unconditional model's; the
    bits/dim given the true labels come beside it as `bpd_given_label` (+ `_std_err`)."""
    values = per_example_bpd(model, split, **kwargs)
    if values.dim() == 1:
        return summarise(values, what, "bpd")
    given = summarise(values[:, 0], what + " (given the labels)", "bpd")
    return {**summarise(values[:, 1], what, "bpd"), "bpd_given_label": given["bpd"],
            "bpd_given_label_std_err": given["bpd_std_err"]}
