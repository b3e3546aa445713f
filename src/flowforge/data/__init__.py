"""Data sets: idx files, where the data live, and MNIST-like image splits."""

from flowforge.data.idx import read_idx, write_idx
from flowforge.data.images import CLASS_NAMES, DATASETS, ImageSplit, load_image_split
from flowforge.data.locate import find_dataset_dir

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "ImageSplit",
    "find_dataset_dir",
    "load_image_split",
    "read_idx",
    "write_idx",
]
