"""The multi-scale architecture as one bijection (RealNVP section 3.6, Glow section 3): level l
transforms what is left of the data; after every level but the last, half of the channels are
factored out, optionally standardised by a split prior given the kept half (split_prior.py), and
set aside. The output is every factored-out part and the last level's output, flattened and
concatenated in that order: a bijection of R^D whose log-det includes the split priors' affine
maps. `latent_shapes` (per example, in that order) are explicit, so the inverse needs no probe.
A context goes to every level's layers and every split prior."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.bijections.memory_saving import run_chain
from flowforge.bijections.split_prior import SplitPrior
from flowforge.errors import ShapeError

GRADIENTS = ("autograd", "reversible", "checkpoint")


class FactorOut(nn.Module):
    """Split (B, C, H, W) into the first `kept_channels` channels and the rest; the rest is
    standardised by `prior` given the kept part and the context (or passed on unchanged: a
    standard-normal split, the same map for every context)."""

    def __init__(self, kept_channels: int, prior: SplitPrior | None = None):
        super().__init__()
        self.kept_channels, self.prior = int(kept_channels), prior

    def forward(self, h: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        kept, out = h[:, : self.kept_channels], h[:, self.kept_channels :]
        if self.prior is None:
            return kept, out, None
        eps, logdet = self.prior.standardise(out, kept, context)
        return kept, eps, logdet

    def inverse(self, kept: Tensor, eps: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if self.prior is None:
            return torch.cat([kept, eps], dim=1), None
        out, logdet = self.prior.unstandardise(eps, kept, context)
        return torch.cat([kept, out], dim=1), logdet


class MultiScale(Bijection):
    """levels[0] -> factor out -> levels[1] -> factor out -> ... -> levels[-1] (module docstring).

    `gradient` is how each level's forward backpropagates (bijections/memory_saving.py):
    "autograd", "reversible" (inputs rebuilt from outputs) or "checkpoint" (per top-level layer)."""

    def __init__(self, levels: Sequence[Bijection], splits: Sequence[FactorOut],
                 latent_shapes: Sequence[Sequence[int]], gradient: str = "autograd"):
        super().__init__()
        if len(splits) != len(levels) - 1 or len(latent_shapes) != len(levels):
            raise ValueError(f"{len(levels)} levels need {len(levels) - 1} splits and {len(levels)} latent shapes, "
                             f"got {len(splits)} and {len(latent_shapes)}")
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        self.levels, self.splits = nn.ModuleList(levels), nn.ModuleList(splits)
        self.latent_shapes = [tuple(int(s) for s in shape) for shape in latent_shapes]
        self.sizes = [math.prod(s) for s in self.latent_shapes]
        self.gradient = gradient

    def _run(self, level: Bijection, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return run_chain(level, z, context, memory_saving=self.gradient == "reversible",
                         checkpointing=self.gradient == "checkpoint")

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        latents, total = self.latents(x, context)
        return self.flatten(latents), total

    def latents(self, x: Tensor, context: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """Every factored-out part and the last level's output (unflattened) and the summed log-det."""
        latents, total, z = [], 0.0, x
        for i, level in enumerate(self.levels):
            z, logdet = self._run(level, z, context)
            total = total + logdet
            if i < len(self.splits):
                z, out, split_logdet = self.splits[i](z, context)
                if split_logdet is not None:
                    total = total + split_logdet
                latents.append(out)
        latents.append(z)
        return latents, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.inverse_latents(self.unflatten(z), context)

    def inverse_latents(self, latents: Sequence[Tensor], context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if len(latents) != len(self.levels):
            raise ShapeError(f"need {len(self.levels)} latents (one per level), got {len(latents)}")
        z, total = latents[-1], 0.0
        for i in reversed(range(len(self.levels))):
            if i < len(self.splits):
                z, split_logdet = self.splits[i].inverse(z, latents[i], context)
                if split_logdet is not None:
                    total = total + split_logdet
            z, logdet = self.levels[i].inverse(z, context=context)
            total = total + logdet
        return z, total

    def flatten(self, latents: Sequence[Tensor]) -> Tensor:
        return torch.cat([z.reshape(z.shape[0], -1) for z in latents], dim=1)

    def unflatten(self, z: Tensor) -> list[Tensor]:
        if z.dim() != 2 or z.shape[1] != sum(self.sizes):
            raise ShapeError(f"{type(self).__name__} expects flat latents (B, {sum(self.sizes)}), got {tuple(z.shape)}")
        return [piece.reshape(z.shape[0], *shape) for piece, shape in zip(z.split(self.sizes, dim=1), self.latent_shapes)]
