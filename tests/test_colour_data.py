"""Tests of the colour image sets: CIFAR-10, SVHN, downsampled ImageNet 32/64 and CelebA.

Every fixture is written into tmp_path in the published layout of the release (pickled batches
as the CIFAR python release, MATLAB v5 files as SVHN, npz files as Chrabaszcz et al. 2017, JPEGs
and the two text files as CelebA); the network is never used.
"""

from __future__ import annotations

import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from flowforge.data import CLASS_NAMES, celeba, find_dataset_dir, load_image_split, locate, readers
from flowforge.data.celeba import CACHE_NAME, load_celeba_attributes
from flowforge.data.quantisation import reduce_bits, to_model_space
from flowforge.data.registry import DATASET_KINDS, dataset_kind, image_shape
from flowforge.errors import DataError

COLOUR = ("cifar10", "svhn", "imagenet32", "imagenet64", "celeba")


def no_network(url: str, dest: Path) -> None:
    raise AssertionError(f"a test tried to download {url}")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No FLOWFORGE_DATA, a per-test user cache, no system locations, no network, no memo."""
    monkeypatch.delenv("FLOWFORGE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(locate, "SYSTEM_DIRS", {})
    monkeypatch.setattr(locate, "download_file", no_network)
    readers._memo.clear()
    yield tmp_path / "xdg-cache"
    readers._memo.clear()


def one_line_error(info: pytest.ExceptionInfo[DataError]) -> str:
    message = str(info.value)
    assert "\n" not in message, message
    return message


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --------------------------------------------------------------------------- CIFAR-10

# Known pixels (plane, row, column) -> value: R at (0, 1), G at (2, 0), B at (31, 31).
PATTERN = {(0, 0, 1): 11, (1, 2, 0): 22, (2, 31, 31): 33}


class Py2Pickler(pickle._Pickler):
    """Writes pickles as the CIFAR release's Python 2 cPickle did: protocol 2, every string
    (bytes or str) a BINSTRING, numpy's reconstruct function under numpy.core.multiarray."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj: bytes | str) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string

    def save_global(self, obj, name=None) -> None:
        module = "numpy.core.multiarray" if getattr(obj, "__name__", "") == "_reconstruct" else obj.__module__
        module = "numpy" if module.startswith("numpy") and module != "numpy.core.multiarray" else module
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], title: str) -> None:
    batch = {
        b"batch_label": title.encode(),
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    with open(path, "wb") as f:
        Py2Pickler(f, protocol=2).dump(batch)


def make_cifar(root: Path, per_batch: int = 4, n_test: int = 5) -> Path:
    """root/cifar10/cifar-10-batches-py/: image k has R(0, 0) = k (train) or 100 + k (test)."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [(f"data_batch_{b}", f"training batch {b} of 5", per_batch, b - 1) for b in range(1, 6)]
    for name, title, n, batch in files + [("test_batch", "testing batch 1 of 1", n_test, None)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        for (c, h, w), v in PATTERN.items():
            data[:, c * 1024 + h * 32 + w] = v
        ids = np.arange(n) + (100 if batch is None else batch * per_batch)
        data[:, 0] = ids
        write_cifar_batch(folder / name, data, [int(i) % 10 for i in ids], title)
    return root


def check_pattern(images: torch.Tensor) -> None:
    for (c, h, w), v in PATTERN.items():
        assert bool((images[:, c, h, w] == v).all()), (c, h, w)


def test_cifar10_fixture_is_a_python2_pickle(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    raw = (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02" and b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw


def test_cifar10_splits_shapes_labels_channels(tmp_path: Path) -> None:
    root = make_cifar(tmp_path)
    train = load_image_split("cifar10", "train", data_dir=root, n_valid=6)
    valid = load_image_split("cifar10", "valid", data_dir=root, n_valid=6)
    test = load_image_split("cifar10", "test", data_dir=root)
    assert train.images.shape == (14, 3, 32, 32) and valid.images.shape == (6, 3, 32, 32)
    assert test.images.shape == (5, 3, 32, 32) and test.images.dtype == torch.uint8
    assert test.labels.dtype == torch.int64
    for split in (train, valid, test):
        check_pattern(split.images)
        assert torch.equal(split.labels, split.images[:, 0, 0, 0].long() % 10)
    ids = train.images[:, 0, 0, 0].tolist() + valid.images[:, 0, 0, 0].tolist()
    assert sorted(ids) == list(range(20)) and ids[:14] == sorted(ids[:14])  # disjoint, covering, file order
    assert test.images[:, 0, 0, 0].tolist() == [100, 101, 102, 103, 104]
    again = load_image_split("cifar10", "valid", data_dir=root, n_valid=6, seed=1)
    assert again.images[:, 0, 0, 0].tolist() != valid.images[:, 0, 0, 0].tolist()
    assert CLASS_NAMES["cifar10"][0] == "airplane" and CLASS_NAMES["cifar10"][9] == "truck"


def test_cifar10_refuses_foreign_globals(tmp_path: Path) -> None:
    root = make_cifar(tmp_path)
    target = tmp_path / "created-by-the-pickle"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(target),))

    path = root / "cifar10" / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"data": Evil()}, protocol=4))
    with pytest.raises(DataError) as info:
        load_image_split("cifar10", "test", data_dir=root)
    message = one_line_error(info)
    assert str(path) in message and "refusing" in message and "posix.mkdir" in message
    assert not target.exists()


def test_cifar10_truncated_and_missing(tmp_path: Path) -> None:
    root = make_cifar(tmp_path)
    folder = root / "cifar10" / "cifar-10-batches-py"
    truncate(folder / "data_batch_3")
    with pytest.raises(DataError) as info:
        load_image_split("cifar10", "train", data_dir=root, n_valid=2)
    message = one_line_error(info)
    assert str(folder / "data_batch_3") in message and "truncated" in message
    (folder / "test_batch").unlink()
    with pytest.raises(DataError) as info:
        load_image_split("cifar10", "test", data_dir=root)
    assert "cifar-10-batches-py/test_batch" in one_line_error(info)


def test_cifar10_nothing_found_says_where(isolated_env: Path) -> None:
    with pytest.raises(DataError) as info:
        load_image_split("cifar10", "test", download=False)
    message = one_line_error(info)
    assert "FLOWFORGE_DATA" in message and "--data-dir" in message
    assert str(isolated_env / "flowforge" / "cifar10") in message
    assert "cifar-10-batches-py/data_batch_1..5" in message


def test_cifar10_download_unpacks_the_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              isolated_env: Path) -> None:
    source = make_cifar(tmp_path / "src") / "cifar10"
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    requested: list[str] = []

    def fake_download(url: str, dest: Path) -> None:  # no network: the archive from tmp_path
        requested.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(archive.read_bytes())

    monkeypatch.setattr(locate, "download_file", fake_download)
    cache = isolated_env / "flowforge" / "cifar10"
    assert find_dataset_dir("cifar10") == cache
    assert requested == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert not (cache / "cifar-10-python.tar.gz").exists()
    assert len(load_image_split("cifar10", "test")) == 5


def test_n_bits_reduction(tmp_path: Path) -> None:
    root = make_cifar(tmp_path)
    full = load_image_split("cifar10", "test", data_dir=root)
    five = load_image_split("cifar10", "test", data_dir=root, n_bits=5)
    assert torch.equal(five.images, full.images // 8 * 8) and torch.equal(five.labels, full.labels)
    assert torch.equal(to_model_space(five.images, 5), to_model_space(full.images, 5))
    assert reduce_bits(full.images, 8) is full.images
    with pytest.raises(ValueError, match="n_bits"):
        load_image_split("cifar10", "test", data_dir=root, n_bits=9)


# --------------------------------------------------------------------------- SVHN


def make_svhn(root: Path, n_train: int = 12, n_test: int = 7) -> Path:
    """root/svhn/{train,test}_32x32.mat; image k has R at row 0, column 0 = k; labels cycle 1..10."""
    folder = root / "svhn"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        x[0, 1, 0, :], x[2, 0, 1, :], x[31, 31, 2, :] = 11, 22, 33  # (row, column, channel, image)
        x[0, 0, 0, :] = np.arange(n)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 = digit 0
        scipy.io.savemat(folder / name, {"X": x, "y": y})
    return root


def test_svhn_shapes_labels_channels(tmp_path: Path) -> None:
    root = make_svhn(tmp_path)
    test = load_image_split("svhn", "test", data_dir=root)
    assert test.images.shape == (7, 3, 32, 32) and test.images.dtype == torch.uint8
    check_pattern(test.images)
    assert test.images[:, 0, 0, 0].tolist() == list(range(7))
    assert test.labels.tolist() == [1, 2, 3, 4, 5, 6, 7]
    train = load_image_split("svhn", "train", data_dir=root, n_valid=4)
    valid = load_image_split("svhn", "valid", data_dir=root, n_valid=4)
    assert (len(train), len(valid)) == (8, 4)
    for split in (train, valid):
        ids = split.images[:, 0, 0, 0].long()
        assert torch.equal(split.labels, (ids % 10 + 1) % 10)  # the file's 10 is the digit 0
    assert 0 in train.labels.tolist() + valid.labels.tolist()
    assert sorted(train.images[:, 0, 0, 0].tolist() + valid.images[:, 0, 0, 0].tolist()) == list(range(12))


def test_svhn_truncated_missing_and_no_scipy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_svhn(tmp_path)
    path = root / "svhn" / "test_32x32.mat"
    truncate(path)
    with pytest.raises(DataError) as info:
        load_image_split("svhn", "test", data_dir=root)
    assert str(path) in one_line_error(info)
    path.unlink()
    with pytest.raises(DataError) as info:
        load_image_split("svhn", "test", data_dir=root)
    assert "test_32x32.mat" in one_line_error(info)
    make_svhn(tmp_path / "again")
    monkeypatch.setitem(__import__("sys").modules, "scipy.io", None)
    with pytest.raises(DataError) as info:
        load_image_split("svhn", "test", data_dir=tmp_path / "again")
    assert "pip install scipy" in one_line_error(info)


# --------------------------------------------------------------------------- ImageNet 32 / 64


def make_imagenet(root: Path, size: int, per_batch: int = 2, n_val: int = 5) -> Path:
    """root/imagenetSIZE/ImagenetSIZE_{train,val}_npz/; labels 1-based; R at (0, 0) = id."""
    name = f"Imagenet{size}"
    (root / f"imagenet{size}" / f"{name}_train_npz").mkdir(parents=True)
    (root / f"imagenet{size}" / f"{name}_val_npz").mkdir(parents=True)
    rng = np.random.default_rng(size)
    plane = size * size

    def batch(ids: np.ndarray) -> dict[str, np.ndarray]:
        data = rng.integers(0, 256, size=(len(ids), 3 * plane), dtype=np.uint8)
        data[:, 0 * plane + 0 * size + 1] = 11  # R at row 0, column 1
        data[:, 1 * plane + 2 * size + 0] = 22  # G at row 2, column 0
        data[:, 2 * plane + (size - 1) * size + size - 1] = 33  # B at the last pixel
        data[:, 0] = ids
        labels = np.where(ids % 2 == 0, 1, 1000).astype(np.int64)  # both ends of 1..1000
        return {"data": data, "labels": labels}

    for i in range(1, 11):
        ids = np.arange(per_batch) + (i - 1) * per_batch
        np.savez(root / f"imagenet{size}" / f"{name}_train_npz" / f"train_data_batch_{i}.npz",
                 **batch(ids), mean=np.zeros(3 * plane))
    np.savez(root / f"imagenet{size}" / f"{name}_val_npz" / "val_data.npz", **batch(np.arange(n_val) + 200))
    return root


@pytest.mark.parametrize("size", [32, 64])
def test_imagenet_shapes_labels_channels(tmp_path: Path, size: int) -> None:
    name = f"imagenet{size}"
    root = make_imagenet(tmp_path, size)
    test = load_image_split(name, "test", data_dir=root)
    assert test.images.shape == (5, 3, size, size) and test.images.dtype == torch.uint8
    assert test.images[:, 0, 0, 0].tolist() == [200, 201, 202, 203, 204]  # the official val set
    assert bool((test.images[:, 0, 0, 1] == 11).all() and (test.images[:, 1, 2, 0] == 22).all())
    assert bool((test.images[:, 2, size - 1, size - 1] == 33).all())
    assert test.labels.tolist() == [0, 999, 0, 999, 0]  # 1-based -> 0-based
    train = load_image_split(name, "train", data_dir=root, n_valid=5)
    valid = load_image_split(name, "valid", data_dir=root, n_valid=5)
    assert (len(train), len(valid)) == (15, 5) and image_shape(name) == (3, size, size)
    assert sorted(train.images[:, 0, 0, 0].tolist() + valid.images[:, 0, 0, 0].tolist()) == list(range(20))
    assert len(CLASS_NAMES[name]) == 1000


def test_imagenet_truncated_and_missing(tmp_path: Path) -> None:
    root = make_imagenet(tmp_path, 32)
    path = root / "imagenet32" / "Imagenet32_train_npz" / "train_data_batch_7.npz"
    truncate(path, 0.8)
    with pytest.raises(DataError) as info:
        load_image_split("imagenet32", "train", data_dir=root, n_valid=1)
    assert str(path) in one_line_error(info)
    path.unlink()
    with pytest.raises(DataError) as info:
        load_image_split("imagenet32", "train", data_dir=root)
    assert "Imagenet32_train_npz/train_data_batch_7.npz" in one_line_error(info)
    with pytest.raises(DataError) as info:
        load_image_split("imagenet64", "test")  # nowhere: says the set needs a login
    message = one_line_error(info)
    assert "image-net.org" in message and "login" in message and "Imagenet64_val_npz/val_data.npz" in message


# --------------------------------------------------------------------------- CelebA

ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
CELEBA_CODES = [0, 0, 2, 1, 0, 2]  # partition of 000001.jpg .. 000006.jpg


def make_celeba(root: Path) -> tuple[Path, np.ndarray]:
    """root/celeba/ as the release: 178x218 JPEGs, green outside the RealNVP crop (rows 40:188,
    columns 15:163), inside it red (60 + 30 k for image k) above blue; the attribute table (±1)."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    for k in range(len(CELEBA_CODES)):
        pixels = np.zeros((218, 178, 3), dtype=np.uint8)
        pixels[..., 1] = 255
        pixels[40:114, 15:163] = (60 + 30 * k, 0, 0)
        pixels[114:188, 15:163] = (0, 0, 255)
        Image.fromarray(pixels).save(folder / "img_align_celeba" / f"{k + 1:06d}.jpg", quality=95, subsampling=0)
    values = np.where(np.random.default_rng(2).random((len(CELEBA_CODES), 40)) < 0.5, -1, 1)
    rows = [f"{k + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in values[k]) for k in range(len(CELEBA_CODES))]
    (folder / "list_attr_celeba.txt").write_text(f"{len(rows)}\n" + " ".join(ATTRIBUTE_NAMES) + " \n"
                                                 + "\n".join(rows) + "\n")
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{k + 1:06d}.jpg {c}\n" for k, c in enumerate(CELEBA_CODES)))
    return root, (values + 1) // 2


def image_ids(images: torch.Tensor) -> list[int]:
    return [round((int(r) - 60) / 30) for r in images[:, 0, 16, 32]]


def test_celeba_crop_channels_splits_and_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = make_celeba(tmp_path)
    train = load_image_split("celeba", "train", data_dir=root, n_valid=1, seed=3)  # n_valid, seed unused
    assert train.images.shape == (3, 3, 64, 64) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [0, 0, 0] and CLASS_NAMES["celeba"] == () and image_shape("celeba") == (3, 64, 64)
    assert image_ids(train.images) == [0, 1, 4]
    assert image_ids(load_image_split("celeba", "valid", data_dir=root).images) == [3]
    test = load_image_split("celeba", "test", data_dir=root)
    assert image_ids(test.images) == [2, 5]
    for split in (train, test):  # the crop holds no green: its first and last rows and columns too
        x = split.images.int()
        assert int(x[:, 1].max()) < 40
        top, bottom = x[:, :, :30], x[:, :, 34:]
        assert int(top[:, 0].min()) >= 50 and int(top[:, 2].max()) < 40
        assert int(bottom[:, 2].min()) > 215 and int(bottom[:, 0].max()) < 40
    err = capsys.readouterr().err
    cache = root / "celeba" / CACHE_NAME
    assert "preprocessing 6 images" in err and str(cache) in err and "6/6 images" in err
    assert np.load(cache).shape == (6, 3, 64, 64)
    # Later loads read the cache: the JPEGs are no longer needed, nothing is decoded again.
    for jpg in (root / "celeba" / "img_align_celeba").iterdir():
        jpg.unlink()
    readers._memo.clear()
    assert torch.equal(load_image_split("celeba", "test", data_dir=root).images, test.images)
    assert "preprocessing" not in capsys.readouterr().err


def test_celeba_cache_in_user_cache_when_folder_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         isolated_env: Path) -> None:
    root, _ = make_celeba(tmp_path)
    real_build = celeba._build_cache

    def build(folder: Path, names: list[str], dest: Path) -> None:
        if dest.parent == folder:  # root ignores file modes: refuse the data folder by hand
            raise PermissionError(13, "Permission denied", str(dest))
        real_build(folder, names, dest)

    monkeypatch.setattr(celeba, "_build_cache", build)
    assert image_ids(load_image_split("celeba", "valid", data_dir=root).images) == [3]
    assert (isolated_env / "flowforge" / "celeba" / CACHE_NAME).is_file()
    assert not (root / "celeba" / CACHE_NAME).exists()


def test_celeba_attributes(tmp_path: Path) -> None:
    root, values = make_celeba(tmp_path)
    for split, code in (("train", 0), ("valid", 1), ("test", 2)):
        attrs = load_celeba_attributes(split, data_dir=root)
        assert attrs.names == tuple(ATTRIBUTE_NAMES)
        assert attrs.values.dtype == torch.int64 and attrs.values.shape == (CELEBA_CODES.count(code), 40)
        rows = [k for k, c in enumerate(CELEBA_CODES) if c == code]
        np.testing.assert_array_equal(attrs.values.numpy(), values[rows])
    attrs = load_celeba_attributes("test", data_dir=root)
    assert torch.equal(attrs.column("Smiling"), attrs.values[:, ATTRIBUTE_NAMES.index("Smiling")])
    with pytest.raises(KeyError, match="Smilling"):
        attrs.column("Smilling")


def test_celeba_truncated_and_missing(tmp_path: Path) -> None:
    root, _ = make_celeba(tmp_path)
    folder = root / "celeba"
    jpg = folder / "img_align_celeba" / "000005.jpg"
    truncate(jpg)
    with pytest.raises(DataError) as info:
        load_image_split("celeba", "test", data_dir=root)
    assert str(jpg) in one_line_error(info)
    assert not list(folder.glob(f"*{CACHE_NAME}*"))  # no half-written cache left behind
    attr = folder / "list_attr_celeba.txt"
    attr.write_text("\n".join(attr.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(DataError) as info:
        load_celeba_attributes("train", data_dir=root)
    assert str(attr) in one_line_error(info) and "truncated" in str(info.value)
    (folder / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError) as info:
        load_image_split("celeba", "train", data_dir=root)
    assert "list_eval_partition.txt" in one_line_error(info)
    with pytest.raises(DataError) as info:
        load_image_split("celeba", "train")  # nowhere: where to get it by hand
    assert "mmlab.ie.cuhk.edu.hk" in one_line_error(info)


# --------------------------------------------------------------------------- registry


def test_registered_as_image_sets() -> None:
    for name in COLOUR:
        assert dataset_kind(name) == "image" and name in CLASS_NAMES
    assert {name for name, kind in DATASET_KINDS.items() if kind == "image"} == set(COLOUR) | {"mnist", "fashion-mnist"}
    with pytest.raises(ValueError, match="cifar10"):
        image_shape("power")
