"""Out-of-distribution probes of invertibility (Behrmann et al. 2021, section 6 and appendix;
public code `glow/analyze.py` on Gaussian / Rademacher noise and SVHN, NOTES d.3): reconstruct
inputs the model never saw and count where the inverse breaks down (inf / NaN kept and counted).

Probes, all (N, C, H, W) in the image models' space [-0.5, 0.5):
- `gaussian`: N(0, 1) noise, unclipped (far outside the data range: the hardest probe);
- `rademacher`: +-0.5 with equal probability (corners of the data cube);
- `constant`: images of one value each, evenly spaced over [-0.5, 0.5 - 2^-n];
- `other-dataset`: MNIST for a Fashion-MNIST model and vice versa, SVHN for a CIFAR-10 model and
  vice versa (supplement D, table 5: OOD reconstructions of a CIFAR-10 Glow, SVHN among them),
  quantised and dequantised as the model's own data; skipped, with a note saying why, when the
  other set is not on disk (never downloaded for a probe).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowforge.diagnostics.maps import Map
from flowforge.diagnostics.reconstruction import error_summary, reconstruction_errors

OTHER_DATASET = {"mnist": "fashion-mnist", "fashion-mnist": "mnist", "cifar10": "svhn", "svhn": "cifar10"}


@dataclass(frozen=True)
class OtherDatasetProbe:
    """The other-dataset probe of a model: `images` in the model's space (None when skipped) and,
    when skipped, a `note` saying why."""

    name: str
    images: Tensor | None
    note: str = ""


def noise_probes(n: int, image_shape: Sequence[int], n_bits: int, generator: torch.Generator) -> dict[str, Tensor]:
    """The synthetic probes: Gaussian, Rademacher and constant images, n of each."""
    shape = (n, *image_shape)
    levels = torch.linspace(-0.5, 0.5 - 2.0**-n_bits, n)
    return {
        "gaussian": torch.randn(shape, generator=generator),
        "rademacher": torch.randint(0, 2, shape, generator=generator).float() - 0.5,
        "constant": levels.reshape(n, *([1] * len(image_shape))).expand(shape).contiguous(),
    }


def other_dataset_probe(model, dataset: str, n: int, data_dir: str | None,
                        generator: torch.Generator) -> OtherDatasetProbe:
    """n test images of the other data set of `dataset` (OTHER_DATASET) in the model's space,
    dequantised; a skipped probe with its note when that set is not found (no download)."""
    from flowforge.data.images import load_image_split
    from flowforge.errors import DataError

    other = OTHER_DATASET.get(dataset)
    if other is None:
        raise ValueError(f"no other data set known for {dataset!r}; expected one of {sorted(OTHER_DATASET)}")
    try:
        images = load_image_split(other, "test", data_dir=data_dir, download=False).images[:n]
    except DataError as err:
        return OtherDatasetProbe(other, None, f"other-dataset probe skipped: {other} is not available ({err})")
    return OtherDatasetProbe(other, model.prepare(images, generator))


def probe_reconstructions(forward: Map, inverse: Map, probes: dict[str, Tensor], batch_size: int = 256,
                          device: torch.device | str = "cpu") -> dict[str, dict]:
    """Per probe: the reconstruction-error summary (mean / max over finite, non-finite counted)."""
    return {name: error_summary(reconstruction_errors(forward, inverse, x.to(device), batch_size))
            for name, x in probes.items()}
