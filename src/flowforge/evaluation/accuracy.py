"""Classification accuracy of a classifier model over a split; examples whose logits are NaN or
infinite are counted (and scored wrong), never dropped."""

from __future__ import annotations

import torch
from torch import Tensor

from flowforge.progress import progress_bar


@torch.no_grad()
def classification_accuracy(model, images: Tensor, labels: Tensor, batch_size: int = 500,
                            device: str | torch.device = "cpu", progress: bool = False) -> dict:
    """{"accuracy", "correct", "examples", "nonfinite_logits"} of `model.logits(model.prepare(images))`.

    The model is put in eval mode (batch-norm running statistics)."""
    model.eval()
    correct = bad = 0
    starts = range(0, len(images), batch_size)
    for start in progress_bar(starts, desc="accuracy", unit="batch", disable=not progress, leave=False):
        x = model.prepare(images[start:start + batch_size].to(device))
        y = labels[start:start + batch_size].to(device)
        logits = model.logits(x)
        finite = torch.isfinite(logits).all(1)
        bad += int((~finite).sum())
        correct += int(((logits.argmax(1) == y) & finite).sum())
    n = len(images)
    return {"accuracy": correct / n if n else float("nan"), "correct": correct, "examples": n,
            "nonfinite_logits": bad}
