"""The published file layout of every image data set flowforge reads: which files a folder must
hold to count as having the set, where the official copies are, and what to do where there is no
open download.

Each set lives in ``ROOT/NAME/`` or directly in ``ROOT/``, where ROOT is ``--data-dir``,
``$FLOWFORGE_DATA`` or the per-user cache (`locate.find_dataset_dir`). The paths below are
relative to that folder and are the ones the official archives unpack to. A path ending in ``/``
is a folder.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LAYOUTS", "MNIST_FILES", "Layout"]

#: The four idx files of MNIST and Fashion-MNIST (LeCun et al.; Xiao et al. 2017).
MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class Layout:
    """Where a data set's files are and how to get them.

    ``files``: the paths a folder must hold (``"x/"`` is a folder). ``summary``: the same in a few
    words, for messages. ``urls``: official downloads; a ``.tar.gz`` is unpacked into the folder,
    any other URL is saved under its last path component (one of ``files``). ``manual``: where to
    get the set by hand when it has no open download (empty when it has one).
    """

    files: tuple[str, ...]
    summary: str
    urls: tuple[str, ...] = ()
    manual: str = ""


def _mnist(base: str) -> Layout:
    return Layout(MNIST_FILES, ", ".join(MNIST_FILES), tuple(base + f for f in MNIST_FILES))


def _imagenet(size: int) -> Layout:
    d = f"Imagenet{size}"
    return Layout(
        tuple(f"{d}_train_npz/train_data_batch_{i}.npz" for i in range(1, 11)) + (f"{d}_val_npz/val_data.npz",),
        f"{d}_train_npz/train_data_batch_1..10.npz and {d}_val_npz/val_data.npz",
        manual=(
            f"the downsampled ImageNet needs an image-net.org login: download {d}_train_npz and {d}_val_npz "
            "(the npz release of Chrabaszcz et al. 2017) from https://image-net.org/download-images and unzip "
            f"both (all ten train_data_batch_*.npz in {d}_train_npz/, also when they come as two parts)"
        ),
    )


LAYOUTS: dict[str, Layout] = {
    "mnist": _mnist("https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion-mnist": _mnist("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    # Krizhevsky 2009, "python version": cifar-10-python.tar.gz unpacks to cifar-10-batches-py/
    "cifar10": Layout(
        tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)) + ("cifar-10-batches-py/test_batch",),
        "cifar-10-batches-py/data_batch_1..5 and cifar-10-batches-py/test_batch",
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    ),
    # Netzer et al. 2011, "Format 2: cropped digits"
    "svhn": Layout(
        ("train_32x32.mat", "test_32x32.mat"),
        "train_32x32.mat and test_32x32.mat",
        tuple(f"http://ufldl.stanford.edu/housenumbers/{f}_32x32.mat" for f in ("train", "test")),
    ),
    "imagenet32": _imagenet(32),
    "imagenet64": _imagenet(64),
    # Liu et al. 2015, "Align&Cropped Images" with the Anno/ and Eval/ text files beside them
    "celeba": Layout(
        ("img_align_celeba/", "list_attr_celeba.txt", "list_eval_partition.txt"),
        "img_align_celeba/*.jpg, list_attr_celeba.txt and list_eval_partition.txt",
        manual=(
            "CelebA has no open download (Google Drive with a quota): get img_align_celeba.zip, "
            "Anno/list_attr_celeba.txt and Eval/list_eval_partition.txt from "
            "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and put the unzipped img_align_celeba/ "
            "and the two text files side by side"
        ),
    ),
}
