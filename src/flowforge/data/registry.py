"""Every data set flowforge knows, by kind: `image` (uint8 images with labels), `toy2d`
(generated 2-D sets), `uci` (the MAF tabular files) and `digits` (scikit-learn's bundled digits)."""

from __future__ import annotations

DATASET_KINDS: dict[str, str] = {
    "mnist": "image",
    "fashion-mnist": "image",
    "two-uniforms": "toy2d",
    "eight-gaussians": "toy2d",
    "checkerboard": "toy2d",
    "two-spirals": "toy2d",
    "rings": "toy2d",
    "two-moons": "toy2d",
    "power": "uci",
    "gas": "uci",
    "hepmass": "uci",
    "miniboone": "uci",
    "bsds300": "uci",
    "digits": "digits",
}


def dataset_kind(name: str) -> str:
    try:
        return DATASET_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(DATASET_KINDS)}") from None
