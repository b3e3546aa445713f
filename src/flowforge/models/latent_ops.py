"""Latent-space operations on models with `encode` / `decode` over lists of latents (Glow
section 6.2-6.3): interpolation between two real images and attribute manipulation by the
difference of mean latents with and without an attribute (a boolean mask: CelebA's attributes,
or one class against another)."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def interpolate(model, x_a: Tensor, x_b: Tensor, steps: int = 8) -> Tensor:
    """Decode (1 - t) * encode(x_a) + t * encode(x_b) for t in linspace(0, 1, steps), every latent
    level interpolated; x_a, x_b are (B, ...) in model space; returns (B, steps, ...)."""
    if x_a.shape != x_b.shape:
        raise ValueError(f"interpolation endpoints must have the same shape, got {tuple(x_a.shape)} and {tuple(x_b.shape)}")
    za, zb = model.encode(x_a), model.encode(x_b)
    frames = []
    for t in torch.linspace(0, 1, steps).tolist():
        frames.append(model.decode([(1 - t) * a + t * b for a, b in zip(za, zb)]))
    return torch.stack(frames, dim=1)


@torch.no_grad()
def mean_latents(model, x: Tensor) -> list[Tensor]:
    """Mean of each latent level over a batch (keeps a batch dimension of 1)."""
    return [z.mean(dim=0, keepdim=True) for z in model.encode(x)]


@torch.no_grad()
def mask_direction(model, x: Tensor, mask: Tensor) -> list[Tensor]:
    """Mean latent of the examples where `mask` (bool, (B,)) holds minus the mean latent of the
    others, per latent level: Glow section 6.3's z_pos - z_neg for a binary attribute."""
    if mask.dtype != torch.bool or mask.shape != x.shape[:1]:
        raise ValueError(f"expected a bool mask of shape ({len(x)},), got {mask.dtype} {tuple(mask.shape)}")
    if not mask.any() or mask.all():
        raise ValueError(f"the attribute direction needs examples with and without the attribute; "
                         f"{int(mask.sum())} of {len(mask)} have it")
    z_pos, z_neg = mean_latents(model, x[mask]), mean_latents(model, x[~mask])
    return [p - n for p, n in zip(z_pos, z_neg)]


@torch.no_grad()
def attribute_direction(model, x: Tensor, labels: Tensor, source: int, target: int) -> list[Tensor]:
    """Mean latent of class `target` minus mean latent of class `source`: `mask_direction` over the
    examples of the two classes, class labels standing in for Glow's binary attributes."""
    for cls in (source, target):
        if not (labels == cls).any():
            raise ValueError(f"no example of class {cls} in the batch used for the attribute direction")
    keep = (labels == source) | (labels == target)
    return mask_direction(model, x[keep], labels[keep] == target)


@torch.no_grad()
def manipulate(model, x: Tensor, direction: list[Tensor], alphas) -> Tensor:
    """Decode encode(x) + alpha * direction for each alpha; returns (B, len(alphas), ...)."""
    z = model.encode(x)
    frames = [model.decode([zi + float(a) * di for zi, di in zip(z, direction)]) for a in alphas]
    return torch.stack(frames, dim=1)
