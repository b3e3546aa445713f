"""Samples of a model of flat points, as `flowforge sample` writes them (a .pt tensor); shared by
the sources of flat data and of energies."""

from __future__ import annotations

from pathlib import Path

import torch


class PointSamples:
    samples_suffix = ".pt"

    @torch.no_grad()
    def sample_points(self, model, n: int, temperature: float, generator: torch.Generator) -> torch.Tensor:
        """n points from the model, on the CPU, in the data's units."""
        return model.sample(n, temperature, generator=generator).cpu()

    def save_points(self, points: torch.Tensor, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(points, path)
        return path
