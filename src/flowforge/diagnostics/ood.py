"""Out-of-distribution probes of invertibility (Behrmann et al. 2021, section 6 and appendix;
public code `glow/analyze.py` on Gaussian / Rademacher noise and SVHN, NOTES d.3): reconstruct
inputs the model never saw and count where the inverse breaks down (inf / NaN kept and counted).

Probes, all (N, C, H, W) in the image models' space [-0.5, 0.5):
- `gaussian`: N(0, 1) noise, unclipped (far outside the data range: the hardest probe);
- `rademacher`: +-0.5 with equal probability (corners of the data cube);
- `constant`: images of one value each, evenly spaced over [-0.5, 0.5 - 2^-n];
- `other-dataset`: MNIST for a Fashion-MNIST model and vice versa, quantised and dequantised as
  the model's own data.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowforge.diagnostics.maps import Map
from flowforge.diagnostics.reconstruction import error_summary, reconstruction_errors

OTHER_DATASET = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}


def noise_probes(n: int, image_shape: Sequence[int], n_bits: int, generator: torch.Generator) -> dict[str, Tensor]:
    """The synthetic probes: Gaussian, Rademacher and constant images, n of each."""
    shape = (n, *image_shape)
    levels = torch.linspace(-0.5, 0.5 - 2.0**-n_bits, n)
    return {
        "gaussian": torch.randn(shape, generator=generator),
        "rademacher": torch.randint(0, 2, shape, generator=generator).float() - 0.5,
        "constant": levels.reshape(n, *([1] * len(image_shape))).expand(shape).contiguous(),
    }


def other_dataset_probe(model, dataset: str, n: int, data_dir: str | None, generator: torch.Generator) -> tuple[str, Tensor]:
    """(name, n test images of the other data set in the model's space, dequantised)."""
    from flowforge.data.images import load_image_split

    other = OTHER_DATASET.get(dataset)
    if other is None:
        raise ValueError(f"no other data set known for {dataset!r}; expected one of {sorted(OTHER_DATASET)}")
    images = load_image_split(other, "test", data_dir=data_dir).images[:n]
    return other, model.prepare(images, generator)


def probe_reconstructions(forward: Map, inverse: Map, probes: dict[str, Tensor], batch_size: int = 256,
                          device: torch.device | str = "cpu") -> dict[str, dict]:
    """Per probe: the reconstruction-error summary (mean / max over finite, non-finite counted)."""
    return {name: error_summary(reconstruction_errors(forward, inverse, x.to(device), batch_size))
            for name, x in probes.items()}
