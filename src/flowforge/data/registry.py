"""Every data set flowforge knows, by kind: `image` (uint8 images with labels), `toy2d`
(generated 2-D sets), `uci` (the MAF tabular files), `digits` (scikit-learn's bundled digits),
`user-array` (a .npy / .npz / .csv file of your own, `user_arrays`) and `user-image` (your own
uint8 images: a .npy tensor or a folder of PNG files, `user_images`) and `energy` (no examples:
the unnormalised 2-D targets of Rezende & Mohamed 2015, fitted by reverse KL),
and the (C, H, W) of every image set as its loader returns it (`images.load_image_split`)."""

from __future__ import annotations

DATASET_KINDS: dict[str, str] = {
    "mnist": "image",
    "fashion-mnist": "image",
    "cifar10": "image",
    "svhn": "image",
    "imagenet32": "image",
    "imagenet64": "image",
    "celeba": "image",
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
    "array": "user-array",
    "image-array": "user-image",
    "image-folder": "user-image",
    # no examples: an unnormalised 2-D log-density to fit by reverse KL (train.objective = "reverse-kl")
    "energy-u1": "energy",
    "energy-u2": "energy",
    "energy-u3": "energy",
    "energy-u4": "energy",
}

IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "svhn": (3, 32, 32),
    "imagenet32": (3, 32, 32),
    "imagenet64": (3, 64, 64),
    "celeba": (3, 64, 64),  # after the RealNVP / Glow crop and resize (celeba.py)
}


def image_shape(name: str) -> tuple[int, int, int]:
    """(C, H, W) of the images of ``name``; ValueError naming the image sets for any other name."""
    try:
        return IMAGE_SHAPES[name]
    except KeyError:
        raise ValueError(f"{name!r} is not an image data set; expected one of {sorted(IMAGE_SHAPES)}") from None


def dataset_kind(name: str) -> str:
    try:
        return DATASET_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(DATASET_KINDS)}") from None
