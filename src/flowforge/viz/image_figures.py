"""The figures of a trained image model (Glow sections 6.2-6.3): a sample grid, a temperature
sweep, interpolations between real images and a class edit along a mean-latent direction."""

from __future__ import annotations

from pathlib import Path

import torch

from flowforge.data.images import ImageSplit
from flowforge.data.quantisation import to_model_space, to_uint8
from flowforge.models.latent_ops import attribute_direction, interpolate, manipulate, mask_direction
from flowforge.viz.grid import save_image, save_rows
from flowforge.viz.nonfinite import record, same_channels, show

SWEEP_TEMPERATURES = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # the public Glow code's grid
EDIT_ALPHAS = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _labels(model, n: int):
    classes = getattr(model, "num_classes", 0)
    return torch.arange(n, device=_device(model)) % classes if classes else None


def _show(model, x: torch.Tensor) -> torch.Tensor:
    return to_uint8(x, model.n_bits).cpu()


def _save_rows(model, frames: list[torch.Tensor], path: Path, labels=None) -> Path:
    """save_rows of model-space frames, non-finite samples marked and recorded (viz/nonfinite.py)."""
    shown = [show(f, model.n_bits) for f in frames]
    out = save_rows(same_channels([images for images, _ in shown]), path, labels)
    record(out, sum(bad for _, bad in shown), sum(len(f) for f in frames))
    return out


def _cell_centres(model, images: torch.Tensor) -> torch.Tensor:
    """Real images in model space at the centres of their dequantisation cells (deterministic)."""
    return to_model_space(images.to(_device(model)), model.n_bits) + 0.5 / 2**model.n_bits


@torch.no_grad()
def sample_grid(model, path: Path, n: int, temperature: float, seed: int,
                class_names: tuple[str, ...] = ()) -> Path:
    """n samples in rows of 8; a class-conditional model's grid has one row per class instead
    (ceil(n / classes) samples each), labelled with `class_names` where given."""
    gen = torch.Generator(device=_device(model)).manual_seed(seed)
    classes = getattr(model, "num_classes", 0)
    if not classes:
        images, bad = show(model.sample(n, temperature, None, gen), model.n_bits)
        out = save_image(images, path)
        record(out, bad, n)
        return out
    per_row = -(-n // classes)
    labels = torch.arange(classes, device=_device(model)).repeat_interleave(per_row)
    frames = model.sample(len(labels), temperature, labels, gen).split(per_row)
    names = [class_names[k] if k < len(class_names) else f"class {k}" for k in range(classes)]
    return _save_rows(model, list(frames), path, names)


@torch.no_grad()
def temperature_sweep(model, path: Path, seed: int, per_row: int = 10) -> Path:
    """One row per temperature, the same noise in every row."""
    rows = []
    for t in SWEEP_TEMPERATURES:
        gen = torch.Generator(device=_device(model)).manual_seed(seed)
        rows.append(model.sample(per_row, t, _labels(model, per_row), gen))
    return _save_rows(model, rows, path, [f"T={t:g}" for t in SWEEP_TEMPERATURES])


@torch.no_grad()
def interpolation_figure(model, path: Path, test: ImageSplit, pairs: int, seed: int, steps: int = 10) -> Path:
    """One row per pair of random test images: the two ends and the decoded latent interpolation."""
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[: 2 * pairs]
    x = _cell_centres(model, test.images[pick])
    frames = interpolate(model, x[:pairs], x[pairs:], steps=steps)
    return _save_rows(model, list(frames), path)


@torch.no_grad()
def class_edit_figure(model, path: Path, test: ImageSplit, source: int, target: int, count: int,
                      reference: int = 2000) -> Path:
    """Test images of class `source` moved along mean latent(target) - mean latent(source), the
    direction estimated on the first `reference` test images."""
    n_ref = min(len(test), reference)
    x_ref = _cell_centres(model, test.images[:n_ref])
    direction = attribute_direction(model, x_ref, test.labels[:n_ref].to(x_ref.device), source, target)
    chosen = _cell_centres(model, test.images[test.labels == source][:count])
    frames = manipulate(model, chosen, direction, EDIT_ALPHAS)
    return _save_rows(model, list(frames), path, [f"#{i}" for i in range(len(frames))])


@torch.no_grad()
def attribute_edit_figure(model, path: Path, reference: ImageSplit, reference_has: torch.Tensor, test: ImageSplit,
                          test_has: torch.Tensor, count: int, max_reference: int = 2000) -> Path:
    """Glow section 6.3 with a real binary attribute: the direction is mean latent(with) - mean
    latent(without) over the first `max_reference` images of `reference` (`reference_has`: 0/1 per
    image); test images without the attribute (all test images if none lacks it) move along it."""
    n_ref = min(len(reference), max_reference)
    x_ref = _cell_centres(model, reference.images[:n_ref])
    direction = mask_direction(model, x_ref, reference_has[:n_ref].to(x_ref.device).bool())
    lacking = test.images[~test_has.bool()]
    chosen = _cell_centres(model, (lacking if len(lacking) else test.images)[:count])
    frames = manipulate(model, chosen, direction, EDIT_ALPHAS)
    return _save_rows(model, list(frames), path, [f"#{i}" for i in range(len(frames))])
