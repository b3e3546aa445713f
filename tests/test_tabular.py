"""The MAF preprocessing of the UCI sets on fixture files written in their standard formats, and
the digits benchmark."""

import numpy as np
import pandas as pd
import pytest
import torch

from flowforge.data.digits import load_digits_splits
from flowforge.data.uci import load_uci
from flowforge.errors import DataError


def _sizes(n):
    n_test = int(0.1 * n)
    n_valid = int(0.1 * (n - n_test))
    return n - n_test - n_valid, n_valid, n_test


def test_power_drops_columns_adds_noise_shuffles_and_standardises(tmp_path):
    n = 300
    rng = np.random.RandomState(0)
    data = rng.rand(n, 8) * 10
    data[:, 0] = np.arange(n)  # a row id that survives (column 0 is kept, with 0.001 U noise)
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", data)
    s = load_uci("power", tmp_path)
    assert (len(s.train), len(s.valid), len(s.test)) == _sizes(n) and s.dim == 6  # POWER is 6-D
    both = torch.cat([s.train, s.valid]).double()
    assert torch.allclose(both.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(both.std(0, unbiased=False), torch.ones(6, dtype=torch.float64), atol=1e-4)
    order = np.arange(n)
    np.random.RandomState(42).shuffle(order)
    ids = order[: len(s.train) + len(s.valid)]
    recovered = torch.cat([s.train, s.valid, s.test])[:, 0].double().numpy() * ids.std() + ids.mean()
    assert (np.round(recovered) == order).all()  # MAF's seeded shuffle, then the split in order
    again = load_uci("power", tmp_path)
    assert torch.equal(s.test, again.test)


def test_gas_correlation_filter_and_full_data_standardisation(tmp_path):
    rng = np.random.RandomState(1)
    n = 400
    sensors = rng.randn(n, 6)
    sensors[:, 1] = sensors[:, 0] * 2.0 + 0.01 * rng.randn(n)  # a near-duplicate of sensor 0
    frame = pd.DataFrame(sensors, columns=[f"s{i}" for i in range(6)])
    frame.insert(0, "Time", np.arange(n))
    frame.insert(1, "Meth", rng.rand(n))
    frame.insert(2, "Eth", rng.rand(n))
    (tmp_path / "gas").mkdir()
    frame.to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    s = load_uci("gas", tmp_path)
    assert s.dim == 5  # Meth, Eth, Time dropped, then the first of the correlated pair
    assert (len(s.train), len(s.valid), len(s.test)) == _sizes(n)
    everything = torch.cat([s.train, s.valid, s.test]).double()
    expected = (sensors[:, 1:] - sensors[:, 1:].mean(0)) / sensors[:, 1:].std(0, ddof=1)
    np.testing.assert_allclose(everything.numpy(), expected, atol=1e-5)  # no shuffle


def test_hepmass_keeps_signal_standardises_with_train_and_prunes_features(tmp_path):
    rng = np.random.RandomState(2)

    def table(n, extra):
        features = rng.randn(n, 28)
        features[: n // 2 + 7, 5] = -3.0  # the smallest value of feature 5 repeats > 5 times
        labels = (np.arange(n) % 2).astype(float)  # half background (0), half signal (1)
        cols = {"# label": labels, **{f"f{i}": features[:, i] for i in range(28)}}
        if extra:
            cols["mass"] = rng.rand(n)
        return pd.DataFrame(cols)

    (tmp_path / "hepmass").mkdir()
    train, test = table(200, False), table(60, True)
    train.to_csv(tmp_path / "hepmass" / "1000_train.csv", index=False)
    test.to_csv(tmp_path / "hepmass" / "1000_test.csv", index=False)
    s = load_uci("hepmass", tmp_path)
    signal = train[train["# label"] == 1].drop(columns=["# label"])
    assert s.dim == 27 and len(s.test) == 30
    assert (len(s.train), len(s.valid)) == (100 - 10, 10)
    expected = ((signal - signal.mean()) / signal.std()).drop(columns=["f5"]).values
    np.testing.assert_allclose(torch.cat([s.train, s.valid]).numpy(), expected, atol=1e-5)


def test_miniboone_and_bsds300(tmp_path):
    import h5py

    rng = np.random.RandomState(3)
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", rng.randn(500, 43) * 3 + 1)
    s = load_uci("miniboone", tmp_path)
    assert s.dim == 43 and (len(s.train), len(s.valid), len(s.test)) == _sizes(500)
    both = torch.cat([s.train, s.valid]).double()
    assert torch.allclose(both.mean(0), torch.zeros(43, dtype=torch.float64), atol=1e-5)

    (tmp_path / "BSDS300").mkdir()
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for key, n in (("train", 50), ("validation", 20), ("test", 30)):
            f[key] = rng.randn(n, 64)
    b = load_uci("bsds300", tmp_path)
    assert b.dim == 63 and (len(b.train), len(b.valid), len(b.test)) == (50, 20, 30)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match="power/data.npy.*zenodo"):
        load_uci("power", tmp_path)
    with pytest.raises(ValueError, match="miniboone"):
        load_uci("cifar", tmp_path)


def test_digits_split_and_dequantisation():
    a, b, c = load_digits_splits(0), load_digits_splits(0), load_digits_splits(1)
    assert (len(a.train), len(a.valid), len(a.test)) == (1257, 180, 360) and a.dim == 64
    assert torch.equal(a.test, b.test) and not torch.equal(a.test, c.test)
    for x in (a.train, a.valid, a.test):
        assert bool(((x > 0) & (x < 1)).all())
    levels = torch.cat([a.train, a.valid, a.test]) * 17
    assert torch.floor(levels).max() == 16  # integer part is the original value 0..16
