"""Evaluation of models trained by an ELBO (localised generative flows): the importance-sampling
estimate of the log-likelihood over a whole split (LGF paper §5: K = 1000 for test, 10 for
validation), reported with

- the mean ELBO in the same unit and the ELBO gap: mean over examples of (metric from the ELBO)
  - (metric from the IS estimate), >= 0; `elbo_relative_gap` = gap / |IS figure| (the paper's
  "average relative error ... when estimating with the ELBO", 8.98e-3 on Fashion-MNIST);
- `is_relative_std`: the standard deviation of the split's IS figure over `repeats` independent
  evaluations divided by its mean's magnitude (the paper: 8.34e-4 over three runs); None for one repeat.

Images use one dequantisation draw per example, the same in every repeat (seeded by `seed`), so
the spread is that of the estimator alone. Every example counts: non-finite values raise.
"""

from __future__ import annotations

import torch

from flowforge.evaluation.summary import summarise
from flowforge.objectives.bits_per_dim import bits_per_dim
from flowforge.objectives.importance import elbo_samples, importance_log_likelihood
from flowforge.progress import progress_bar


def _metric_of(model, metric: str):
    if metric == "bpd":
        return lambda log_p: bits_per_dim(log_p, model.num_dims, model.n_bits)
    return lambda log_p: -log_p


@torch.no_grad()
def evaluate_importance(model, data: torch.Tensor, metric: str, samples: int, repeats: int = 1,
                        batch_size: int = 1000, seed: int = 0, device: torch.device | str = "cpu",
                        what: str = "split", progress: bool = False) -> dict:
    """IS figure (`metric`: "nll" for flat rows, "bpd" for uint8 images) of every example of `data`
    with K = `samples`, repeated `repeats` times with independent draws of u."""
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    model.eval()
    device = torch.device(device)
    to_metric = _metric_of(model, metric)
    is_values = [[] for _ in range(repeats)]
    elbo_values = []
    dequantise = torch.Generator(device=device).manual_seed(seed)
    noise = [torch.Generator(device=device).manual_seed(seed + 1 + r) for r in range(repeats)]
    starts = range(0, len(data), batch_size)
    for start in progress_bar(starts, desc=f"IS eval (K={samples}, x{repeats})", disable=not progress, leave=False):
        x = data[start : start + batch_size].to(device)
        if metric == "bpd":
            x = model.prepare(x, dequantise)
        elbo_sum = 0.0
        for r in range(repeats):
            elbos = elbo_samples(lambda rows: model.elbo(rows, noise[r]), x, samples, model.max_rows)
            is_values[r].append(to_metric(importance_log_likelihood(elbos)).cpu())
            elbo_sum = elbo_sum + elbos.mean(0)
        elbo_values.append(to_metric(elbo_sum / repeats).cpu())
    per_repeat = [torch.cat(v) for v in is_values]
    result = summarise(per_repeat[0], what, metric)
    for r, values in enumerate(per_repeat[1:], start=1):
        summarise(values, f"{what} (repeat {r + 1})", metric)  # refuses non-finite values
    elbo_metric = summarise(torch.cat(elbo_values), f"{what} (ELBO)", metric)[metric]
    means = torch.tensor([float(v.mean()) for v in per_repeat], dtype=torch.float64)
    is_figure = float(means.mean())
    gap = elbo_metric - is_figure
    result.update({
        metric: is_figure,
        f"{metric}_repeats": [float(m) for m in means],
        f"{metric}_elbo": elbo_metric,
        "elbo_gap": gap,
        "elbo_relative_gap": gap / abs(is_figure) if is_figure != 0 else float("nan"),
        "is_relative_std": float(means.std() / abs(means.mean())) if repeats > 1 else None,
        "importance_samples": samples,
        "repeats": repeats,
    })
    return result
