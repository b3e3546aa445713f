"""Fréchet distance between feature statistics (Heusel et al. 2017, "FID"):

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})

The trace of the matrix square root is computed without scipy, stably, in float64:
Tr((S_1 S_2)^{1/2}) = Tr((A S_2 A)^{1/2}) with A = S_1^{1/2} (both from symmetric
eigen-decompositions; S_1 S_2 is similar to A S_2 A, which is symmetric positive semi-definite),
so it is the sum of the square roots of A S_2 A's eigenvalues (rounding negatives clamped to 0).

`fid_of_sampler` draws samples from a model, quantises them to 8-bit images as they would be
saved, and compares their features with those of the real test images. The features come from a
`FeatureExtractor` (evaluation/fid_features.py); every result names its extractor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowforge.data.quantisation import to_uint8
from flowforge.errors import NonFiniteError, ShapeError
from flowforge.progress import progress_bar


def _sqrt_psd(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def feature_statistics(features: Tensor, what: str = "features") -> tuple[Tensor, Tensor]:
    """(mean, covariance) in float64 of (N, F) features; NonFiniteError naming how many rows are
    NaN or infinite (they are never dropped)."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ShapeError(f"{what}: expected (N >= 2, F) features, got {tuple(features.shape)}")
    bad = int((~torch.isfinite(features)).any(dim=1).sum())
    if bad:
        raise NonFiniteError(f"{what}: {bad} of {features.shape[0]} feature rows are non-finite; no FID is reported")
    f = features.double()
    mean = f.mean(0)
    centred = f - mean
    return mean, centred.T @ centred / (f.shape[0] - 1)


def frechet_distance(mean_1: Tensor, cov_1: Tensor, mean_2: Tensor, cov_2: Tensor) -> float:
    """Fréchet distance between N(mean_1, cov_1) and N(mean_2, cov_2), in float64."""
    mean_1, mean_2, cov_1, cov_2 = (t.double() for t in (mean_1, mean_2, cov_1, cov_2))
    if mean_1.shape != mean_2.shape or cov_1.shape != cov_2.shape or cov_1.shape != (len(mean_1),) * 2:
        raise ShapeError(f"frechet_distance: means {tuple(mean_1.shape)}, {tuple(mean_2.shape)} and covariances "
                         f"{tuple(cov_1.shape)}, {tuple(cov_2.shape)} do not agree")
    root_1 = _sqrt_psd(cov_1)
    middle = root_1 @ cov_2 @ root_1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mean_1 - mean_2).pow(2).sum() + torch.trace(cov_1) + torch.trace(cov_2) - 2 * trace_sqrt
    return float(value.clamp(min=0))  # rounding can leave -1e-12 for identical statistics


def fid_from_features(features_1: Tensor, features_2: Tensor) -> float:
    """The Frechet distance between the Gaussians fitted to two feature sets (Heusel et al. 2017)."""
    return frechet_distance(*feature_statistics(features_1, "first set"), *feature_statistics(features_2, "second set"))


@torch.no_grad()
def image_features(extractor, images: Tensor, batch_size: int = 500, progress: bool = False,
                   desc: str = "features") -> Tensor:
    """Features of uint8 images (N, C, H, W), computed on the extractor's device, returned on CPU."""
    device = next(extractor.parameters()).device
    out = []
    for start in progress_bar(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False):
        out.append(extractor.features(images[start:start + batch_size].to(device)).cpu())
    return torch.cat(out)


@torch.no_grad()
def sample_images(sampler: Callable[[int, torch.Generator], Tensor], n: int, n_bits: int, seed: int = 0,
                  batch_size: int = 500, device: torch.device | str = "cpu", progress: bool = False) -> Tensor:
    """n samples from `sampler(count, generator)` (model-space floats) as uint8 images. A sample with
    a NaN or infinite pixel raises NonFiniteError with the count (to_uint8 would hide it)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    out, bad = [], 0
    for start in progress_bar(range(0, n, batch_size), desc="samples", disable=not progress, leave=False):
        x = sampler(min(batch_size, n - start), gen)
        bad += int((~torch.isfinite(x.flatten(1))).any(dim=1).sum())
        out.append(to_uint8(x, n_bits).cpu())
    if bad:
        raise NonFiniteError(f"{bad} of {n} samples have non-finite pixels; no FID is reported")
    return torch.cat(out)


def sampler_for(model, temperature: float | None = None, use_glow: bool = True):
    """`sampler(n, generator)` of a trained image model. Latent-variable models with a Glow layer
    (vae-flow) take the Glow temperature (None: the model's default) and can skip the layer
    (`use_glow=False`: the decoder mean, "VAE samples"); other models sample at `temperature` (None: 1)."""
    if hasattr(model, "decode_latents"):
        return lambda n, gen: model.decode_latents(model.sample_latents(n, generator=gen), temperature, gen, use_glow)
    if not use_glow:
        raise ValueError(f"{type(model).__name__} has no Glow layer to skip")
    t = 1.0 if temperature is None else temperature
    return lambda n, gen: model.sample(n, t, generator=gen)


def reference_statistics(extractor, test_images: Tensor, n: int, progress: bool = False) -> tuple[Tensor, Tensor]:
    """(mean, covariance) of the features of the first n test images (uint8): computed once and
    passed to every `fid_of_sampler` call that compares with the same images."""
    if n > len(test_images):
        raise ShapeError(f"FID with n = {n} needs {n} test images, have {len(test_images)}")
    return feature_statistics(image_features(extractor, test_images[:n], progress=progress, desc="test features"),
                              "test images")


def fid_of_sampler(sampler: Callable[[int, torch.Generator], Tensor], extractor, test_images: Tensor, n: int,
                   n_bits: int = 8, seed: int = 0, device: torch.device | str = "cpu", progress: bool = False,
                   reference: tuple[Tensor, Tensor] | None = None) -> dict:
    """FID between n samples and the first n test images (uint8), with the extractor named;
    `reference`: those images' statistics from `reference_statistics`, if already computed."""
    if reference is None:
        reference = reference_statistics(extractor, test_images, n, progress)
    fake = sample_images(sampler, n, n_bits, seed, device=device, progress=progress)
    f_fake = image_features(extractor, fake, progress=progress, desc="sample features")
    return {"fid": frechet_distance(*feature_statistics(f_fake, "samples"), *reference), "n": n,
            "extractor": extractor.description}


__all__ = ["feature_statistics", "frechet_distance", "fid_from_features", "image_features", "sample_images",
           "fid_of_sampler", "reference_statistics", "sampler_for"]
