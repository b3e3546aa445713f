"""Data sets: idx files, where the data live, and image splits (MNIST-like and colour sets)."""

from flowforge.data.celeba import load_celeba_attributes
from flowforge.data.celeba_lists import CelebAAttributes
from flowforge.data.idx import read_idx, write_idx
from flowforge.data.images import CLASS_NAMES, DATASETS, ImageSplit, load_image_split
from flowforge.data.locate import find_dataset_dir

__all__ = [
    "CLASS_NAMES",
    "CelebAAttributes",
    "DATASETS",
    "ImageSplit",
    "find_dataset_dir",
    "load_celeba_attributes",
    "load_image_split",
    "read_idx",
    "write_idx",
]
