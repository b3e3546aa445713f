"""One tiny setting per registered model: the table behind the model contract test and the
reference fixtures. A model registered without a row here fails `test_model_contract.py`."""

from __future__ import annotations

import torch

IMAGE = (1, 8, 8)
FLAT_DIM = 3

# name -> constructor keyword arguments (the data arguments included)
TINY_MODELS: dict[str, dict] = {
    "flat-realnvp": {"dim": FLAT_DIM, "layers": 2, "hidden": [8]},
    "flat-resflow": {"dim": FLAT_DIM, "blocks": 2, "hidden": [8]},
    "maf": {"dim": FLAT_DIM, "layers": 2, "hidden": [8, 8]},
    "nsf": {"dim": FLAT_DIM, "layers": 2, "hidden": [8], "bins": 4},
    "nsf-ar": {"dim": FLAT_DIM, "layers": 2, "hidden": [8, 8], "bins": 4},
    "iaf": {"dim": FLAT_DIM, "layers": 2, "hidden": [8, 8]},
    "planar": {"dim": FLAT_DIM, "layers": 3, "householder": 1},
    "lgf-maf": {"dim": FLAT_DIM, "layers": 2, "hidden": [8], "u_dim": 1, "st_hidden": [8], "pq_hidden": [8],
                "test_samples": 4, "train_samples": 1},
    "lgf-flat-realnvp": {"dim": FLAT_DIM, "layers": 2, "hidden": [8], "u_dim": 1, "st_hidden": [8],
                         "pq_hidden": [8], "test_samples": 4, "train_samples": 1},
    "glow": {"image_shape": IMAGE, "levels": 2, "depth": 2, "hidden": 8, "n_bits": 5},
    "inn-classifier": {"image_shape": IMAGE, "levels": 2, "depth": 1, "hidden": 8, "n_bits": 5},
    "lgf-glow": {"image_shape": IMAGE, "levels": 2, "depth": 1, "hidden": 8, "n_bits": 5, "u_channels": 1,
                 "st_blocks": 1, "st_hidden": 4, "pq_blocks": 1, "pq_hidden": 8, "test_samples": 2},
    "realnvp": {"image_shape": IMAGE, "blocks": 1, "hidden": 4, "n_bits": 5, "logit_alpha": 0.05},
    "lgf-realnvp": {"image_shape": IMAGE, "blocks": 1, "hidden": 4, "n_bits": 5, "logit_alpha": 0.05,
                    "u_channels": 1, "st_blocks": 1, "st_hidden": 4, "pq_blocks": 1, "pq_hidden": 8,
                    "test_samples": 2},
    "resflow": {"image_shape": IMAGE, "scales": 2, "blocks": 1, "hidden": 8, "n_bits": 5},
    "vae-flow": {"image_shape": IMAGE, "n_bits": 5, "latent_dim": 4, "channels": 4, "depth": 1, "prior_layers": 2,
                 "prior_hidden": [8], "glow_depth": 2, "glow_hidden": 8, "phase": "joint"},
}


def is_image(name: str) -> bool:
    return "image_shape" in TINY_MODELS[name]


def tiny_batch(name: str, n: int = 16, seed: int = 0):
    """A seeded batch of the model's data kind: (uint8 images, labels) or (flat floats,)."""
    g = torch.Generator().manual_seed(seed)
    kw = TINY_MODELS[name]
    if is_image(name):
        c, h, w = kw["image_shape"]
        images = torch.randint(0, 2 ** kw["n_bits"], (n, c, h, w), generator=g, dtype=torch.uint8)
        return images, torch.randint(0, 10, (n,), generator=g)
    return (torch.randn(n, kw["dim"], generator=g) * 1.5 + 0.5,)
