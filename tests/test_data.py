"""Tests of flowforge.data: idx files, locating data sets, MNIST-like splits.

Everything runs on small fixture files written into tmp_path; the network is never used.
One test reads the real MNIST / Fashion-MNIST when FLOWFORGE_DATA points at them.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from flowforge.data import (
    CLASS_NAMES,
    DATASETS,
    ImageSplit,
    find_dataset_dir,
    load_image_split,
    locate,
    read_idx,
    write_idx,
)
from flowforge.data.locate import DATASET_FILES, DOWNLOAD_URLS
from flowforge.data.locate import download_file as real_download_file  # before monkeypatching
from flowforge.errors import DataError

# Read before the autouse fixture below clears it for every other test.
REAL_DATA = os.environ.get("FLOWFORGE_DATA")

N_TRAIN, N_TEST = 100, 20
MNIST_LIKE = ("mnist", "fashion-mnist")  # the idx sets; the colour sets are tested in test_colour_data.py


# --------------------------------------------------------------------------- helpers


def make_dataset(folder: Path, n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0) -> Path:
    """Write the four idx gz files of a small MNIST-like set; pixel [0, 0] of image i is i % 256."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n) % 256
        labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def gz_payload(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def write_gz(path: Path, payload: bytes) -> None:
    path.write_bytes(gzip.compress(payload))


def no_network(url: str, dest: Path) -> None:
    raise AssertionError(f"a test tried to download {url}")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No FLOWFORGE_DATA, a per-test user cache, empty system locations, no network."""
    monkeypatch.delenv("FLOWFORGE_DATA", raising=False)
    cache_home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    monkeypatch.setattr(
        locate, "SYSTEM_DIRS", {"mnist": (), "fashion-mnist": (tmp_path / "system" / "fashion-mnist",)}
    )
    monkeypatch.setattr(locate, "download_file", no_network)
    return cache_home


# --------------------------------------------------------------------------- idx files


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("shape", [(7,), (5, 28, 28), (2, 3, 4, 5)])
def test_idx_round_trip(tmp_path: Path, suffix: str, shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / f"a-idx{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == shape
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # a writable copy


def test_idx_header_layout(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.arange(3, dtype=np.uint8))
    assert path.read_bytes() == bytes.fromhex("00000801") + struct.pack(">I", 3) + bytes([0, 1, 2])
    path = tmp_path / "images-idx3-ubyte.gz"
    write_idx(path, np.zeros((2, 28, 28), dtype=np.uint8))
    assert gz_payload(path)[:16] == bytes.fromhex("00000803") + struct.pack(">3I", 2, 28, 28)


def test_write_idx_rejects_non_uint8(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x.gz", np.zeros(3, dtype=np.float32))


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope-idx1-ubyte.gz.*no such file"):
        read_idx(tmp_path / "nope-idx1-ubyte.gz")


def test_read_idx_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "junk-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match="junk-idx1-ubyte.gz.*gzip"):
        read_idx(path)


def test_read_idx_cut_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "cut-idx3-ubyte.gz"
    write_idx(path, np.ones((10, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match="cut-idx3-ubyte.gz.*gzip"):
        read_idx(path)


def test_read_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "magic-idx1-ubyte.gz"
    write_gz(path, bytes.fromhex("01020801") + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="magic-idx1-ubyte.gz.*bad idx magic 0x01020801"):
        read_idx(path)


def test_read_idx_gzip_content_without_gz_name(tmp_path: Path) -> None:
    path = tmp_path / "packed-idx1-ubyte"
    write_gz(path, bytes.fromhex("00000801") + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="packed-idx1-ubyte.*looks gzip-compressed"):
        read_idx(path)


def test_read_idx_unsupported_type(tmp_path: Path) -> None:
    path = tmp_path / "float-idx1-ubyte.gz"
    write_gz(path, bytes.fromhex("00000d01") + struct.pack(">I", 2) + b"\x00" * 8)
    with pytest.raises(DataError, match=r"float-idx1-ubyte.gz.*0x0d \(float32\)"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short-idx3-ubyte.gz"
    write_gz(path, bytes.fromhex("00000803") + struct.pack(">I", 10))
    with pytest.raises(DataError, match="short-idx3-ubyte.gz.*truncated idx header.*16.*found 8"):
        read_idx(path)


def test_read_idx_truncated_data(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.ones((10, 28, 28), dtype=np.uint8))
    write_gz(path, gz_payload(path)[:-10])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*truncated.*need 7840 bytes, found 7830"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.ones(10, dtype=np.uint8))
    write_gz(path, gz_payload(path) + b"\x00\x00\x00")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: 3 trailing bytes.*need 10 bytes, found 13"):
        read_idx(path)


# --------------------------------------------------------------------------- locating


def test_locate_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> None:
    explicit = make_dataset(tmp_path / "explicit" / "mnist")
    env = make_dataset(tmp_path / "env" / "mnist")
    cache = make_dataset(isolated_env / "flowforge" / "mnist")
    monkeypatch.setenv("FLOWFORGE_DATA", str(tmp_path / "env"))
    assert find_dataset_dir("mnist", data_dir=tmp_path / "explicit") == explicit
    assert find_dataset_dir("mnist") == env
    monkeypatch.delenv("FLOWFORGE_DATA")
    assert find_dataset_dir("mnist") == cache
    assert find_dataset_dir("mnist", download=False) == cache


def test_locate_flat_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flat = make_dataset(tmp_path / "flat")
    assert find_dataset_dir("fashion-mnist", data_dir=str(flat)) == flat
    monkeypatch.setenv("FLOWFORGE_DATA", str(flat))
    assert find_dataset_dir("mnist") == flat


def test_locate_explicit_dir_lacking_files_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dataset(tmp_path / "env" / "mnist")
    monkeypatch.setenv("FLOWFORGE_DATA", str(tmp_path / "env"))
    partial = tmp_path / "partial"
    make_dataset(partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        find_dataset_dir("mnist", data_dir=partial)
    message = str(info.value)
    assert str(partial) in message and "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "env") not in message  # no silent fall-through to FLOWFORGE_DATA


def test_locate_env_lacking_falls_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("FLOWFORGE_DATA", str(tmp_path / "empty"))
    cache = make_dataset(isolated_env / "flowforge" / "fashion-mnist")
    assert find_dataset_dir("fashion-mnist") == cache


def test_locate_system_dir(tmp_path: Path) -> None:
    system = make_dataset(tmp_path / "system" / "fashion-mnist")
    assert find_dataset_dir("fashion-mnist", download=False) == system
    with pytest.raises(DataError):  # the system location is for fashion-mnist only
        find_dataset_dir("mnist", download=False)


def test_locate_nothing_found_lists_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> None:
    monkeypatch.setenv("FLOWFORGE_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as info:
        find_dataset_dir("fashion-mnist", download=False)
    message = str(info.value)
    for place in (
        tmp_path / "env" / "fashion-mnist",
        tmp_path / "env",
        isolated_env / "flowforge" / "fashion-mnist",
        tmp_path / "system" / "fashion-mnist",
    ):
        assert str(place) in message
    assert "FLOWFORGE_DATA" in message and "--data-dir" in message


def test_locate_unknown_name() -> None:
    with pytest.raises(ValueError, match="fashion-mnist.*cifar10"):
        find_dataset_dir("cifar100")


@pytest.mark.parametrize("name", MNIST_LIKE)
def test_locate_downloads_into_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    source = make_dataset(tmp_path / "source")
    requested: list[str] = []

    def fake_download(url: str, dest: Path) -> None:
        requested.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((source / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(locate, "download_file", fake_download)
    cache = isolated_env / "flowforge" / name
    assert find_dataset_dir(name) == cache
    assert sorted(requested) == sorted(DOWNLOAD_URLS[name] + f for f in DATASET_FILES)
    assert DOWNLOAD_URLS["mnist"] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    for f in DATASET_FILES:
        assert (cache / f).read_bytes() == (source / f).read_bytes()
    err = capsys.readouterr().err
    assert all(url in err for url in requested)
    # A second call finds the cache and downloads nothing; the files load as a data set.
    requested.clear()
    assert find_dataset_dir(name) == cache and requested == []
    assert len(load_image_split(name, "test")) == N_TEST


def test_locate_download_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(url: str, dest: Path) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(locate, "download_file", failing)
    with pytest.raises(DataError, match="(?s)download failed.*ossci-datasets.*network unreachable"):
        find_dataset_dir("mnist")


def test_download_file_is_atomic(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"payload" * 1000)
    dest = tmp_path / "out" / "file.gz"
    real_download_file(source.as_uri(), dest)  # file:// URL: no network
    assert dest.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.gz"]
    with pytest.raises(OSError):
        real_download_file((tmp_path / "missing.bin").as_uri(), tmp_path / "out" / "other.gz")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.gz"]  # no leftover temp file


# --------------------------------------------------------------------------- splits


def ids(split: ImageSplit) -> list[int]:
    return split.images[:, 0, 0, 0].tolist()


def test_splits_sizes_disjoint_and_covering(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d" / "mnist").parent
    train = load_image_split("mnist", "train", data_dir=root, n_valid=30)
    valid = load_image_split("mnist", "valid", data_dir=root, n_valid=30)
    test = load_image_split("mnist", "test", data_dir=root, n_valid=30)
    assert (len(train), len(valid), len(test)) == (70, 30, N_TEST)
    assert train.images.shape == (70, 1, 28, 28) and train.images.dtype == torch.uint8
    assert valid.labels.shape == (30,) and valid.labels.dtype == torch.int64
    assert set(ids(train)).isdisjoint(ids(valid))
    assert sorted(ids(train) + ids(valid)) == list(range(N_TRAIN))
    assert ids(train) == sorted(ids(train))  # file order kept


def test_splits_match_files(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "mnist")
    train_images = read_idx(folder / "train-images-idx3-ubyte.gz")
    train_labels = read_idx(folder / "train-labels-idx1-ubyte.gz")
    valid = load_image_split("mnist", "valid", data_dir=folder, n_valid=10)
    index = valid.images[:, 0, 0, 0].long().numpy()
    np.testing.assert_array_equal(valid.images[:, 0].numpy(), train_images[index])
    np.testing.assert_array_equal(valid.labels.numpy(), train_labels[index])
    test = load_image_split("mnist", "test", data_dir=folder)
    np.testing.assert_array_equal(test.images[:, 0].numpy(), read_idx(folder / "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(test.labels.numpy(), read_idx(folder / "t10k-labels-idx1-ubyte.gz"))


def test_splits_seeded(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "mnist")
    a = load_image_split("mnist", "valid", data_dir=folder, n_valid=20, seed=0)
    b = load_image_split("mnist", "valid", data_dir=folder, n_valid=20, seed=0)
    c = load_image_split("mnist", "valid", data_dir=folder, n_valid=20, seed=1)
    assert ids(a) == ids(b)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert ids(a) != ids(c)


def test_splits_n_valid_bounds(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "mnist")
    assert len(load_image_split("mnist", "train", data_dir=folder, n_valid=0)) == N_TRAIN
    assert len(load_image_split("mnist", "valid", data_dir=folder, n_valid=0)) == 0
    assert len(load_image_split("mnist", "valid", data_dir=folder, n_valid=N_TRAIN - 1)) == N_TRAIN - 1
    for bad in (N_TRAIN, -1):
        with pytest.raises(ValueError, match="n_valid"):
            load_image_split("mnist", "train", data_dir=folder, n_valid=bad)


def test_splits_bad_arguments(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "mnist")
    with pytest.raises(ValueError, match="'train', 'valid', 'test'"):
        load_image_split("mnist", "validation", data_dir=folder)
    with pytest.raises(ValueError, match="'mnist', 'fashion-mnist'"):
        load_image_split("cifar100", "train", data_dir=folder)


def test_splits_count_mismatch(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "mnist")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(N_TEST - 1, dtype=np.uint8))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*20 images.*t10k-labels-idx1-ubyte.gz.*19 labels"):
        load_image_split("mnist", "test", data_dir=folder)


def test_splits_images_must_be_3d(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "mnist")
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((N_TEST, 784), dtype=np.uint8))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*3-D"):
        load_image_split("mnist", "test", data_dir=folder)


def test_splits_label_out_of_range(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "mnist")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(N_TEST, 10, dtype=np.uint8))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*label 10"):
        load_image_split("mnist", "test", data_dir=folder)


def test_splits_cache_sees_replaced_file_and_is_not_aliased(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "mnist")
    first = load_image_split("mnist", "test", data_dir=folder)
    first.images.zero_()  # must not reach the cached copy
    again = load_image_split("mnist", "test", data_dir=folder)
    assert again.images.any()
    path = folder / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.full((N_TEST, 28, 28), 7, dtype=np.uint8))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert bool((load_image_split("mnist", "test", data_dir=folder).images == 7).all())


def test_image_split_checks_shapes() -> None:
    split = ImageSplit(torch.zeros(3, 1, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
    assert len(split) == 3
    with pytest.raises(ValueError):
        ImageSplit(torch.zeros(3, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))


def test_class_names() -> None:
    assert set(CLASS_NAMES) == set(DATASETS) and set(MNIST_LIKE) <= set(DATASETS)
    assert CLASS_NAMES["mnist"] == tuple("0123456789")
    assert len(CLASS_NAMES["fashion-mnist"]) == 10
    assert CLASS_NAMES["fashion-mnist"][0] == "T-shirt/top" and CLASS_NAMES["fashion-mnist"][9] == "Ankle boot"


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize("name", MNIST_LIKE)
def test_real_data(name: str) -> None:
    if not REAL_DATA:
        pytest.skip("FLOWFORGE_DATA is not set (point it at the shared data folder)")
    if not all((Path(REAL_DATA) / name / f).is_file() for f in DATASET_FILES):
        pytest.skip(f"FLOWFORGE_DATA={REAL_DATA} does not hold {name}/")
    train = load_image_split(name, "train", data_dir=REAL_DATA, n_valid=5000, download=False)
    valid = load_image_split(name, "valid", data_dir=REAL_DATA, n_valid=5000, download=False)
    test = load_image_split(name, "test", data_dir=REAL_DATA, download=False)
    assert (len(train), len(valid), len(test)) == (55000, 5000, 10000)
    for split in (train, valid, test):
        assert split.images.shape[1:] == (1, 28, 28) and split.images.dtype == torch.uint8
        assert split.labels.dtype == torch.int64
        assert int(split.labels.min()) >= 0 and int(split.labels.max()) <= 9
    assert set(test.labels.tolist()) == set(range(10))
