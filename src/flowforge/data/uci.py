"""The tabular density-estimation sets of the MAF paper (Papamakarios et al. 2017), read from the
files of the MAF preprocessing release (zenodo record 1161203) and preprocessed exactly as the
MAF code's ``datasets/*.py`` (github gpapamak/maf; NOTES b.7): column drops, added noise, the GAS
correlation filter, HEPMASS feature pruning, the 10 % / 10 % splits and the standardisation.

Files, relative to the data root (``data_dir``, then ``FLOWFORGE_DATA``, then the per-user cache
``$XDG_CACHE_HOME/flowforge`` or ``~/.cache/flowforge``)::

    power/data.npy                                   POWER      D = 6
    gas/ethylene_CO.pickle                           GAS        D = 8
    hepmass/1000_train.csv, hepmass/1000_test.csv    HEPMASS    D = 21
    miniboone/data.npy                               MINIBOONE  D = 43
    BSDS300/BSDS300.hdf5                             BSDS300    D = 63

They are not downloaded automatically. Everything is computed in float64 and cast to float32 at
the end (the MAF code casts at the same point).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from flowforge.data.arrays import ArraySplits
from flowforge.data.locate import cache_dir
from flowforge.errors import DataError

__all__ = [
    "UCI_DATASETS",
    "load_bsds300",
    "load_gas",
    "load_hepmass",
    "load_miniboone",
    "load_power",
    "load_uci",
    "uci_roots",
]

_SOURCE = ("these files come from the MAF preprocessing release (Papamakarios et al., zenodo record "
           "1161203, https://zenodo.org/record/1161203) and are not downloaded automatically")


# --------------------------------------------------------------------------------------------
# helpers


def _import(module: str):
    """pandas / h5py are optional: import them only where a loader needs them."""
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"reading this data set needs {module}: pip install flowforge[tabular]") from None


def _file(root: str | os.PathLike, relative: str) -> Path:
    path = Path(root).expanduser() / relative
    if not path.is_file():
        raise DataError(f"{path}: file not found; {_SOURCE}")
    return path


def _load_npy(path: Path, columns: int | None = None) -> np.ndarray:
    try:
        data = np.load(path)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable numpy .npy array ({e})") from None
    if data.ndim != 2 or (columns is not None and data.shape[1] != columns):
        want = f"(N, {columns})" if columns is not None else "(N, D)"
        raise DataError(f"{path}: expected a 2-D array {want}, got shape {data.shape}")
    return data.astype(np.float64)


def _split_tail(data: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The MAF split: the last 10 % is test, the last 10 % of the rest is validation, in file order."""
    n_test = int(0.1 * data.shape[0])
    n_valid = int(0.1 * (data.shape[0] - n_test))
    if n_valid == 0:  # data[-0:] would be the whole array
        raise DataError(f"{path}: {data.shape[0]} rows are too few for the 10 % / 10 % split (need >= 12)")
    test, rest = data[-n_test:], data[:-n_test]
    return rest[:-n_valid], rest[-n_valid:], test


def _standardise_with_train_and_valid(train, valid, test):
    """MAF's POWER / MINIBOONE standardisation: mean and std (ddof 0) of train and valid together."""
    both = np.vstack((train, valid))
    mu, s = both.mean(axis=0), both.std(axis=0)
    return (train - mu) / s, (valid - mu) / s, (test - mu) / s


def _splits(name: str, path: Path, train, valid, test) -> ArraySplits:
    parts = [np.asarray(a, dtype=np.float64) for a in (train, valid, test)]
    for split, a in zip(("train", "valid", "test"), parts):
        if not np.isfinite(a).all():  # e.g. a constant column divided by a zero std
            raise DataError(f"{path}: the {split} split has non-finite values after the MAF preprocessing")
    return ArraySplits(name, *(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in parts))


# --------------------------------------------------------------------------------------------
# one loader per data set (MAF datasets/<name>.py)


def load_power(root: str | os.PathLike) -> ArraySplits:
    """POWER (MAF ``datasets/power.py``): seeded shuffle (RandomState(42)), drop columns 3 and 1
    (global intensity, reactive power), add uniform noise, split, standardise with train + valid."""
    path = _file(root, "power/data.npy")
    data = _load_npy(path, columns=8)  # gap, grp, voltage, intensity, sm1, sm2, sm3, time
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    # the draw order (voltage before gap) is MAF's and decides the noise values
    voltage_noise = 0.01 * rng.rand(n, 1)
    gap_noise = 0.001 * rng.rand(n, 1)
    sm_noise = rng.rand(n, 3)
    time_noise = np.zeros((n, 1))
    data = data + np.hstack((gap_noise, voltage_noise, sm_noise, time_noise))
    return _splits("power", path, *_standardise_with_train_and_valid(*_split_tail(data, path)))


def _gas_correlation_numbers(frame) -> np.ndarray:
    """Per column, how many columns (itself included) it correlates with above 0.98."""
    return (frame.corr() > 0.98).values.sum(axis=1)


def load_gas(root: str | os.PathLike) -> ArraySplits:
    """GAS (MAF ``datasets/gas.py``): drop Meth, Eth, Time; repeatedly drop the first column that
    correlates > 0.98 with another; standardise with the whole data (pandas, ddof 1); split."""
    pd = _import("pandas")
    path = _file(root, "gas/ethylene_CO.pickle")
    try:
        data = pd.read_pickle(path)
    except Exception as e:  # unpickling raises many kinds
        raise DataError(f"{path}: not a readable pandas DataFrame pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"{path}: expected a pandas DataFrame, got {type(data).__name__}")
    missing = [c for c in ("Meth", "Eth", "Time") if c not in data.columns]
    if missing:
        raise DataError(f"{path}: expected columns Meth, Eth and Time; missing {missing}")
    data = data.drop("Meth", axis=1).drop("Eth", axis=1).drop("Time", axis=1)
    counts = _gas_correlation_numbers(data)
    while np.any(counts > 1):
        data = data.drop(data.columns[np.where(counts > 1)[0][0]], axis=1)
        counts = _gas_correlation_numbers(data)
    data = (data - data.mean()) / data.std()  # pandas: ddof 1, statistics of all the data
    return _splits("gas", path, *_split_tail(data.values.astype(np.float64), path))


def load_hepmass(root: str | os.PathLike) -> ArraySplits:
    """HEPMASS (MAF ``datasets/hepmass.py``): signal rows only (label, the first column, == 1),
    label dropped (and the test file's extra last column); standardised with the train statistics
    (pandas, ddof 1); features pruned (see the quirk below); the last 10 % of train is validation."""
    pd = _import("pandas")
    train_path, test_path = _file(root, "hepmass/1000_train.csv"), _file(root, "hepmass/1000_test.csv")
    frames = []
    for path in (train_path, test_path):
        try:
            frames.append(pd.read_csv(path, index_col=False))
        except Exception as e:  # pandas parser errors, encoding errors, empty files
            raise DataError(f"{path}: not a readable CSV file ({type(e).__name__}: {e})") from None
    data_train, data_test = frames
    data_train = data_train[data_train[data_train.columns[0]] == 1]
    data_train = data_train.drop(data_train.columns[0], axis=1)
    data_test = data_test[data_test[data_test.columns[0]] == 1]
    data_test = data_test.drop(data_test.columns[0], axis=1)
    data_test = data_test.drop(data_test.columns[-1], axis=1)  # the test file has an extra column
    if list(data_test.columns) != list(data_train.columns):
        # pandas aligns on the names below: a mismatch would silently give NaN columns
        raise DataError(f"{test_path}: expected the columns of {train_path} after dropping the label "
                        f"and the last column; got {list(data_test.columns)} vs {list(data_train.columns)}")
    if len(data_train) == 0:
        raise DataError(f"{train_path}: no signal rows (first column == 1)")
    mu, s = data_train.mean(), data_train.std()
    data_train = ((data_train - mu) / s).values.astype(np.float64)
    data_test = ((data_test - mu) / s).values.astype(np.float64)

    # QUIRK kept from the MAF code: `max_count` is the count of the SMALLEST value of the feature
    # (the first entry of the counts sorted by value), not the count of its most frequent value.
    # A feature is dropped when its smallest value occurs more than 5 times.
    features_to_remove = []
    for i, feature in enumerate(data_train.T):
        c = Counter(feature)
        max_count = np.array([v for k, v in sorted(c.items())])[0]
        if max_count > 5:
            features_to_remove.append(i)
    keep = [i for i in range(data_train.shape[1]) if i not in features_to_remove]
    data_train, data_test = data_train[:, keep], data_test[:, keep]

    n_valid = int(0.1 * data_train.shape[0])
    if n_valid == 0:
        raise DataError(f"{train_path}: {data_train.shape[0]} signal rows are too few for a 10 % validation split")
    return _splits("hepmass", train_path, data_train[:-n_valid], data_train[-n_valid:], data_test)


def load_miniboone(root: str | os.PathLike) -> ArraySplits:
    """MINIBOONE (MAF ``datasets/miniboone.py``): split in file order, standardise with train + valid."""
    path = _file(root, "miniboone/data.npy")
    data = _load_npy(path)
    return _splits("miniboone", path, *_standardise_with_train_and_valid(*_split_tail(data, path)))


def load_bsds300(root: str | os.PathLike) -> ArraySplits:
    """BSDS300 (MAF ``datasets/bsds300.py``): the "train", "validation" and "test" datasets as given.

    The MAF release stores 63 columns per 8x8 patch: its patches have their mean removed, so the 64th
    pixel is minus the sum of the others and was left out of the file (MAF rebuilds it as
    ``-sum(x)`` to show images). A file with all 64 pixels has that last column dropped here, which
    gives the same 63-dimensional set; other widths are refused.
    """
    h5py = _import("h5py")
    path = _file(root, "BSDS300/BSDS300.hdf5")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("train", "validation", "test") if k not in f]
            if missing:
                raise DataError(f"{path}: expected hdf5 datasets train, validation and test; missing {missing}")
            parts = [np.asarray(f[k][:], dtype=np.float64) for k in ("train", "validation", "test")]
    except OSError as e:
        raise DataError(f"{path}: not a readable hdf5 file ({e})") from None
    for k, a in zip(("train", "validation", "test"), parts):
        if a.ndim != 2 or a.shape[1] not in (63, 64):
            raise DataError(f"{path}: dataset {k!r} should be (N, 63) (or (N, 64) with the last pixel), "
                            f"got shape {a.shape}")
    parts = [a[:, :63] for a in parts]
    return _splits("bsds300", path, *parts)


#: name -> (loader, files relative to the data root)
UCI_DATASETS: dict[str, tuple[Callable[[str | os.PathLike], ArraySplits], tuple[str, ...]]] = {
    "power": (load_power, ("power/data.npy",)),
    "gas": (load_gas, ("gas/ethylene_CO.pickle",)),
    "hepmass": (load_hepmass, ("hepmass/1000_train.csv", "hepmass/1000_test.csv")),
    "miniboone": (load_miniboone, ("miniboone/data.npy",)),
    "bsds300": (load_bsds300, ("BSDS300/BSDS300.hdf5",)),
}


def uci_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Data roots to look in, in order: ``data_dir`` alone when given; else ``FLOWFORGE_DATA`` (when
    set) and then the per-user cache (``$XDG_CACHE_HOME/flowforge`` or ``~/.cache/flowforge``)."""
    if data_dir:
        return [Path(data_dir).expanduser()]
    env = os.environ.get("FLOWFORGE_DATA")
    return ([Path(env).expanduser()] if env else []) + [cache_dir("")]


def load_uci(name: str, data_dir: str | os.PathLike | None = None) -> ArraySplits:
    """Splits of the MAF tabular set ``name`` (power, gas, hepmass, miniboone, bsds300), read from
    the first root of `uci_roots` that holds all its files and preprocessed as the MAF code does."""
    if name not in UCI_DATASETS:
        raise ValueError(f"unknown tabular data set {name!r}; expected one of {sorted(UCI_DATASETS)}")
    loader, files = UCI_DATASETS[name]
    looked = []
    for root in uci_roots(data_dir):
        paths = [root / f for f in files]
        if all(p.is_file() for p in paths):
            return loader(root)
        looked += [f"{p}" + ("" if p.is_file() else " (missing)") for p in paths]
    raise DataError(f"{name}: data files not found; looked at {', '.join(looked)}. {_SOURCE[0].upper()}"
                    f"{_SOURCE[1:]}: put them under a data root (--data-dir or FLOWFORGE_DATA) at these "
                    "relative paths")
