"""Negative log-likelihood (nats per example) of a flat-data model over a whole split; every
example counts (non-finite ones are refused, never dropped)."""

from __future__ import annotations

import torch

from flowforge.evaluation.summary import summarise
from flowforge.progress import progress_bar


@torch.no_grad()
def per_example_nll(model, x: torch.Tensor, batch_size: int = 10_000, device: torch.device | str = "cpu",
                    progress: bool = False, desc: str = "eval", context: torch.Tensor | None = None) -> torch.Tensor:
    """-log p(x | context) of every row of x, in order, as a float64 CPU tensor."""
    model.eval()

    def ctx(i: int) -> torch.Tensor | None:
        return None if context is None else context[i : i + batch_size].to(device)

    out = [-model.log_prob(x[i : i + batch_size].to(device), ctx(i)).double().cpu()
           for i in progress_bar(range(0, len(x), batch_size), desc=desc, disable=not progress, leave=False)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


def evaluate_nll(model, x: torch.Tensor, what: str = "split", **kwargs) -> dict:
    """{"nll", "nll_std_err", "examples"} over all rows of x (keywords as per_example_nll)."""
    return summarise(per_example_nll(model, x, **kwargs), what, "nll")
