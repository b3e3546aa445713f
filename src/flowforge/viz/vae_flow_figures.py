"""Figures of the VAE-flow model (Morrow & Chiu 2020): VAE samples beside the same latents after
the Glow layer (figure 4), and interpolations between random points of the latent space (figure 5)."""

from __future__ import annotations

from pathlib import Path

import torch

from flowforge.viz.grid import save_rows
from flowforge.viz.nonfinite import record, same_channels, show


@torch.no_grad()
def glow_vs_vae_figure(model, path: str | Path, rows: int = 8, glow_draws: int = 4, temperature: float | None = None,
                       seed: int = 0) -> Path:
    """One row per latent z ~ p(z): the VAE sample g_mu(z) (left), then `glow_draws` samples
    f^-1(g_mu(z) + T g_sigma(z) eps) of the same z after the Glow layer."""
    if model.glow is None:
        raise ValueError("glow_vs_vae_figure needs a model with its Glow layer (phase 'glow' or 'joint')")
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    z = model.sample_latents(rows, generator=gen)
    columns = [model.decode_latents(z, use_glow=False)]
    columns += [model.decode_latents(z, temperature, gen) for _ in range(glow_draws)]
    return _save_columns(columns, model.n_bits, path)  # rows of 1 + draws images


@torch.no_grad()
def latent_interpolation_figure(model, path: str | Path, pairs: int = 4, steps: int = 10, seed: int = 0) -> Path:
    """One row per pair of random latents z_a, z_b ~ p(z): decode((1 - t) z_a + t z_b), t in [0, 1]
    (through the Glow layer at temperature 0 when the model has one)."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    z_a, z_b = model.sample_latents(pairs, generator=gen), model.sample_latents(pairs, generator=gen)
    frames = [model.decode([(1 - t) * z_a + t * z_b]) for t in torch.linspace(0, 1, steps).tolist()]
    return _save_columns(frames, model.n_bits, path)


def _save_columns(columns: list[torch.Tensor], n_bits: int, path) -> Path:
    """Columns of model-space images as rows of a figure; non-finite samples marked and recorded."""
    shown = [show(c, n_bits) for c in columns]
    images = torch.stack(same_channels([s for s, _ in shown]), dim=1)  # (rows, columns, C, H, W)
    out = save_rows(list(images), path)
    record(out, sum(bad for _, bad in shown), sum(len(c) for c in columns))
    return out
