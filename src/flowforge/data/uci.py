"""The tabular density-estimation sets of the MAF paper (Papamakarios et al. 2017), read from the
files of the MAF preprocessing release (zenodo record 1161203) and preprocessed exactly as the
MAF code's `datasets/*.py` (NOTES b.7): column drops, added noise, the GAS correlation filter,
HEPMASS feature pruning, 10 % / 10 % splits and standardisation.

Files, relative to the data root (`data_dir`, then FLOWFORGE_DATA, then the per-user cache):
    power/data.npy, gas/ethylene_CO.pickle, hepmass/1000_train.csv + hepmass/1000_test.csv,
    miniboone/data.npy, BSDS300/BSDS300.hdf5
They are not downloaded automatically.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from flowforge.data.arrays import ArraySplits
from flowforge.errors import DataError

UCI_FILES = {
    "power": ("power/data.npy",),
    "gas": ("gas/ethylene_CO.pickle",),
    "hepmass": ("hepmass/1000_train.csv", "hepmass/1000_test.csv"),
    "miniboone": ("miniboone/data.npy",),
    "bsds300": ("BSDS300/BSDS300.hdf5",),
}


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"reading this data set needs {module}: pip install 'flowforge[tabular]'") from None


def _split_tail(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The MAF split: the last 10 % is test, the last 10 % of the rest is validation."""
    n_test = int(0.1 * data.shape[0])
    test, rest = data[-n_test:], data[:-n_test]
    n_valid = int(0.1 * rest.shape[0])
    return rest[:-n_valid], rest[-n_valid:], test


def _standardise_with_train_and_valid(train, valid, test):
    both = np.vstack((train, valid))
    mu, s = both.mean(axis=0), both.std(axis=0)
    return (train - mu) / s, (valid - mu) / s, (test - mu) / s


def _splits(name: str, train, valid, test) -> ArraySplits:
    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    return ArraySplits(name, t(train), t(valid), t(test))


def load_power(root: Path) -> ArraySplits:
    rng = np.random.RandomState(42)
    data = np.load(root / UCI_FILES["power"][0])
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    voltage_noise = 0.01 * rng.rand(n, 1)
    gap_noise = 0.001 * rng.rand(n, 1)
    sm_noise = rng.rand(n, 3)
    time_noise = np.zeros((n, 1))
    data = data + np.hstack((gap_noise, voltage_noise, sm_noise, time_noise))
    return _splits("power", *_standardise_with_train_and_valid(*_split_tail(data)))


def load_gas(root: Path) -> ArraySplits:
    pd = _need("pandas")
    data = pd.read_pickle(root / UCI_FILES["gas"][0])
    data = data.drop(columns=["Meth", "Eth", "Time"])

    def correlated_counts(frame):
        return (frame.corr() > 0.98).values.sum(axis=1)

    counts = correlated_counts(data)
    while np.any(counts > 1):
        data = data.drop(columns=[data.columns[np.where(counts > 1)[0][0]]])
        counts = correlated_counts(data)
    data = (data - data.mean()) / data.std()  # pandas: ddof 1, statistics of all the data
    return _splits("gas", *_split_tail(data.values))


def load_hepmass(root: Path) -> ArraySplits:
    pd = _need("pandas")
    train_file, test_file = (root / f for f in UCI_FILES["hepmass"])
    train = pd.read_csv(train_file, index_col=False)
    test = pd.read_csv(test_file, index_col=False)
    # signal only, then drop the label column (and the test file's extra last column)
    train = train[train[train.columns[0]] == 1].drop(columns=[train.columns[0]])
    test = test[test[test.columns[0]] == 1].drop(columns=[test.columns[0]])
    test = test.drop(columns=[test.columns[-1]])
    mu, s = train.mean(), train.std()
    train, test = ((train - mu) / s).values, ((test - mu) / s).values
    # QUIRK kept from the MAF code: the count of the SMALLEST value of a feature (not its most
    # frequent value) decides whether the feature is dropped
    drop = [i for i, feature in enumerate(train.T) if np.array([v for _, v in sorted(Counter(feature).items())])[0] > 5]
    keep = [i for i in range(train.shape[1]) if i not in drop]
    train, test = train[:, keep], test[:, keep]
    n_valid = int(train.shape[0] * 0.1)
    return _splits("hepmass", train[:-n_valid], train[-n_valid:], test)


def load_miniboone(root: Path) -> ArraySplits:
    data = np.load(root / UCI_FILES["miniboone"][0])
    return _splits("miniboone", *_standardise_with_train_and_valid(*_split_tail(data)))


def load_bsds300(root: Path) -> ArraySplits:
    h5py = _need("h5py")
    with h5py.File(root / UCI_FILES["bsds300"][0], "r") as f:
        parts = [np.asarray(f[key])[:, :-1] for key in ("train", "validation", "test")]
    return _splits("bsds300", *parts)


_LOADERS = {"power": load_power, "gas": load_gas, "hepmass": load_hepmass, "miniboone": load_miniboone,
            "bsds300": load_bsds300}


def _roots(data_dir) -> list[Path]:
    if data_dir:
        return [Path(data_dir)]
    roots = [Path(os.environ["FLOWFORGE_DATA"])] if os.environ.get("FLOWFORGE_DATA") else []
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flowforge"
    return roots + [cache]


def load_uci(name: str, data_dir: str | os.PathLike | None = None) -> ArraySplits:
    """Splits of UCI set `name` (power, gas, hepmass, miniboone, bsds300), preprocessed as MAF."""
    if name not in _LOADERS:
        raise ValueError(f"unknown tabular data set {name!r}; expected one of {sorted(_LOADERS)}")
    looked = []
    for root in _roots(data_dir):
        files = [root / f for f in UCI_FILES[name]]
        if all(f.is_file() for f in files):
            return _LOADERS[name](root)
        looked += [str(f) for f in files if not f.is_file()]
    raise DataError(f"{name}: files not found; looked for {', '.join(looked)}. They come from the MAF "
                    "preprocessing release (Papamakarios et al., zenodo record 1161203) and are not downloaded "
                    "automatically: put them under FLOWFORGE_DATA or pass --data-dir")
