"""The MAF preprocessing of the UCI sets (``flowforge.data.uci``) on small fixture files written in
their standard formats, checked against an independent re-computation from the MAF code's steps;
and the scikit-learn digits benchmark (``flowforge.data.digits``)."""

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from flowforge.data.arrays import ArraySplits
from flowforge.data.digits import DIGITS_LEVELS, digits_discrete_log_likelihood, load_digits_splits
from flowforge.data.uci import UCI_DATASETS, load_power, load_uci
from flowforge.errors import DataError


def _sizes(n):
    """(train, valid, test) rows of MAF's split: test = int(0.1 N), valid = int(0.1 of the rest)."""
    n_test = int(0.1 * n)
    n_valid = int(0.1 * (n - n_test))
    return n - n_test - n_valid, n_valid, n_test


def _rows(s: ArraySplits):
    return len(s.train), len(s.valid), len(s.test)


def _check_float32(s: ArraySplits):
    assert all(t.dtype == torch.float32 for t in (s.train, s.valid, s.test))


def _cat(s: ArraySplits) -> np.ndarray:
    return torch.cat([s.train, s.valid, s.test]).double().numpy()


# ------------------------------------------------------------------------------------- POWER


def _power_expected(raw):
    """MAF datasets/power.py, step by step."""
    rng = np.random.RandomState(42)
    data = raw.copy()
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(np.delete(data, 3, axis=1), 1, axis=1)
    voltage_noise = 0.01 * rng.rand(n, 1)
    gap_noise = 0.001 * rng.rand(n, 1)
    sm_noise = rng.rand(n, 3)
    data = data + np.hstack((gap_noise, voltage_noise, sm_noise, np.zeros((n, 1))))
    n_test = int(0.1 * n)
    test, data = data[-n_test:], data[:-n_test]
    n_valid = int(0.1 * data.shape[0])
    valid, train = data[-n_valid:], data[:-n_valid]
    both = np.vstack((train, valid))
    mu, s = both.mean(0), both.std(0)
    return np.vstack(((train - mu) / s, (valid - mu) / s, (test - mu) / s))


def test_power(tmp_path):
    n = 307
    rng = np.random.RandomState(0)
    raw = rng.rand(n, 8) * 10  # gap, grp, voltage, intensity, sm1, sm2, sm3, time
    raw[:, 7] = np.arange(n)  # row id in the time column, which gets no noise
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", raw)
    s = load_uci("power", tmp_path)
    _check_float32(s)
    assert s.name == "power" and s.dim == 6 and _rows(s) == _sizes(n)  # columns 3 and 1 dropped
    np.testing.assert_allclose(_cat(s), _power_expected(raw), rtol=1e-5, atol=1e-5)
    both = torch.cat([s.train, s.valid]).double()
    np.testing.assert_allclose(both.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(both.std(0, unbiased=False).numpy(), 1, atol=1e-5)
    # the seeded shuffle, then the splits in order; ids recovered from the time column
    order = np.arange(n)
    np.random.RandomState(42).shuffle(order)
    ids = order[: len(s.train) + len(s.valid)]
    recovered = np.round(_cat(s)[:, 5] * ids.std() + ids.mean()).astype(int)
    np.testing.assert_array_equal(recovered, order)
    assert len(set(recovered)) == n  # disjoint splits covering every row
    again = load_power(tmp_path)  # deterministic (RandomState(42))
    assert all(torch.equal(getattr(s, k), getattr(again, k)) for k in ("train", "valid", "test"))


def test_power_wrong_width_is_refused(tmp_path):
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", np.zeros((50, 7)))
    with pytest.raises(DataError, match=r"power/data\.npy.*\(N, 8\).*\(50, 7\)"):
        load_uci("power", tmp_path)


# --------------------------------------------------------------------------------------- GAS


def test_gas_correlation_filter_and_full_data_standardisation(tmp_path):
    rng = np.random.RandomState(1)
    n = 403
    sensors = rng.randn(n, 6)
    sensors[:, 3] = sensors[:, 2] * 2.0 + 0.01 * rng.randn(n)  # a near-duplicate of sensor 2
    frame = pd.DataFrame(sensors, columns=[f"s{i}" for i in range(6)])
    frame.insert(0, "Time", np.arange(n, dtype=float))
    frame.insert(1, "Meth", rng.rand(n))
    frame.insert(2, "Eth", rng.rand(n))
    (tmp_path / "gas").mkdir()
    frame.to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    s = load_uci("gas", tmp_path)
    _check_float32(s)
    # Meth, Eth, Time dropped, then the first column of the correlated pair (s2)
    assert s.dim == 5 and _rows(s) == _sizes(n)
    kept = sensors[:, [0, 1, 3, 4, 5]]
    expected = (kept - kept.mean(0)) / kept.std(0, ddof=1)  # whole-data statistics, pandas ddof 1
    np.testing.assert_allclose(_cat(s), expected, rtol=1e-5, atol=1e-5)  # file order, no shuffle
    whole = torch.from_numpy(_cat(s))
    np.testing.assert_allclose(whole.std(0, unbiased=True).numpy(), 1, atol=1e-5)


# ----------------------------------------------------------------------------------- HEPMASS


def _hepmass_tables(rng, n_train, n_test):
    def table(n, extra):
        features = rng.randn(n, 28)
        labels = (rng.rand(n) < 0.5).astype(float)
        labels[:2], labels[2:4] = 0.0, 1.0
        features[labels == 0] += 1000.0  # background rows would wreck the statistics if kept
        signal = np.flatnonzero(labels == 1)
        features[signal[:7], 5] = -50.0  # feature 5: its smallest value occurs 7 > 5 times -> pruned
        features[signal[:9], 9] = 7.0  # feature 9: a value repeated 9 times, but not the smallest -> kept
        cols = {"# label": labels, **{f"f{i}": features[:, i] for i in range(27)}, "mass": features[:, 27]}
        if extra:
            cols["extra"] = rng.rand(n)  # the test file's extra trailing column
        return pd.DataFrame(cols)

    return table(n_train, False), table(n_test, True)


def test_hepmass_keeps_signal_standardises_with_train_and_prunes_features(tmp_path):
    rng = np.random.RandomState(2)
    train, test = _hepmass_tables(rng, 240, 70)
    (tmp_path / "hepmass").mkdir()
    train.to_csv(tmp_path / "hepmass" / "1000_train.csv", index=False)
    test.to_csv(tmp_path / "hepmass" / "1000_test.csv", index=False)
    s = load_uci("hepmass", tmp_path)
    _check_float32(s)

    sig_train = train[train["# label"] == 1].drop(columns=["# label"]).to_numpy()
    sig_test = test[test["# label"] == 1].drop(columns=["# label", "extra"]).to_numpy()
    mu, sd = sig_train.mean(0), sig_train.std(0, ddof=1)
    keep = [i for i in range(28) if i != 5]
    exp_train = ((sig_train - mu) / sd)[:, keep]
    exp_test = ((sig_test - mu) / sd)[:, keep]
    n_valid = int(0.1 * len(exp_train))
    assert s.dim == 27  # label dropped, the extra test column dropped, feature 5 pruned
    assert _rows(s) == (len(exp_train) - n_valid, n_valid, len(exp_test))
    np.testing.assert_allclose(s.train.numpy(), exp_train[:-n_valid], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.valid.numpy(), exp_train[-n_valid:], rtol=1e-5, atol=1e-5)  # last 10 %
    np.testing.assert_allclose(s.test.numpy(), exp_test, rtol=1e-5, atol=1e-5)
    assert _cat(s).max() < 100  # no background row (shifted by +1000) survived
    # the train statistics: whole train file (train + valid) has mean 0, std 1 (ddof 1)
    both = torch.cat([s.train, s.valid]).double()
    np.testing.assert_allclose(both.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(both.std(0).numpy(), 1, atol=1e-5)
    # the quirk: feature 9 (a repeated value that is not its smallest) was kept
    feature9 = torch.cat([s.train, s.valid])[:, 8].numpy()
    assert max(Counter(np.round(feature9, 4)).values()) == 9


# ------------------------------------------------------------------------- MINIBOONE, BSDS300


def test_miniboone(tmp_path):
    rng = np.random.RandomState(3)
    n = 511
    raw = rng.randn(n, 43) * 3 + 1
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", raw)
    s = load_uci("miniboone", tmp_path)
    _check_float32(s)
    assert s.dim == 43 and _rows(s) == _sizes(n)
    n_train, n_valid, _ = _sizes(n)
    both = raw[: n_train + n_valid]
    np.testing.assert_allclose(_cat(s), (raw - both.mean(0)) / both.std(0), rtol=1e-5, atol=1e-5)
    t = torch.cat([s.train, s.valid]).double()
    np.testing.assert_allclose(t.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(t.std(0, unbiased=False).numpy(), 1, atol=1e-5)


@pytest.mark.parametrize("width", [63, 64])
def test_bsds300(tmp_path, width):
    import h5py

    rng = np.random.RandomState(4)
    raw = {key: rng.randn(n, width) for key, n in (("train", 50), ("validation", 20), ("test", 30))}
    (tmp_path / "BSDS300").mkdir()
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for key, a in raw.items():
            f[key] = a
    b = load_uci("bsds300", tmp_path)
    _check_float32(b)
    assert b.dim == 63 and _rows(b) == (50, 20, 30)
    for split, key in (("train", "train"), ("valid", "validation"), ("test", "test")):
        np.testing.assert_allclose(getattr(b, split).numpy(), raw[key][:, :63], rtol=1e-6)  # not standardised


# ---------------------------------------------------------------------------- finding files


def test_missing_files_name_every_path(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWFORGE_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError) as e:
        load_uci("hepmass")
    msg = str(e.value)
    for root in (tmp_path / "env", tmp_path / "cache" / "flowforge"):
        assert str(root / "hepmass" / "1000_train.csv") in msg and str(root / "hepmass" / "1000_test.csv") in msg
    assert "zenodo record 1161203" in msg and "not downloaded automatically" in msg
    with pytest.raises(DataError, match=r"power/data\.npy"):
        load_uci("power", tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"miniboone/data\.npy"):
        UCI_DATASETS["miniboone"][0](tmp_path)  # the loaders check too
    with pytest.raises(ValueError, match="miniboone"):
        load_uci("cifar", tmp_path)


def test_roots_in_order(tmp_path, monkeypatch):
    for root, value in ((tmp_path / "arg", 1.0), (tmp_path / "env", 2.0), (tmp_path / "cache" / "flowforge", 3.0)):
        (root / "miniboone").mkdir(parents=True)
        np.save(root / "miniboone" / "data.npy", np.random.RandomState(5).randn(40, 3) * value)
    monkeypatch.setenv("FLOWFORGE_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a, env = load_uci("miniboone", tmp_path / "arg"), load_uci("miniboone")
    assert torch.allclose(a.train, env.train, atol=1e-5)  # standardised: same up to the scale
    (tmp_path / "env" / "miniboone" / "data.npy").unlink()
    assert _rows(load_uci("miniboone")) == _sizes(40)  # falls through to the cache
    monkeypatch.delenv("FLOWFORGE_DATA")
    assert _rows(load_uci("miniboone")) == _sizes(40)


# ------------------------------------------------------------------------------------ digits


def test_digits_split_and_dequantisation():
    from sklearn.datasets import load_digits

    values = load_digits().data
    a, b, c = load_digits_splits(0), load_digits_splits(0), load_digits_splits(1)
    _check_float32(a)
    assert a.name == "digits" and _rows(a) == (1257, 180, 360) and a.dim == 64
    for k in ("train", "valid", "test"):
        assert torch.equal(getattr(a, k), getattr(b, k)) and not torch.equal(getattr(a, k), getattr(c, k))
    for x in (a.train, a.valid, a.test):
        assert bool(((x >= 0) & (x <= 1)).all())
    # floor(17 x) recovers the integer values of the rows RandomState(seed).permutation picks, in order
    order = np.random.RandomState(0).permutation(len(values))
    bounds = (0, 1257, 1437, 1797)
    for k, split in enumerate(("train", "valid", "test")):
        x = getattr(a, split).double().numpy()
        np.testing.assert_array_equal(np.floor(x * DIGITS_LEVELS), values[order[bounds[k] : bounds[k + 1]]])
    assert len(set(order)) == 1797  # the three splits are disjoint
    # the noise really is uniform within each bin
    frac = (torch.cat([a.train, a.valid, a.test]).double() * DIGITS_LEVELS).frac()
    assert abs(float(frac.mean()) - 0.5) < 0.01
    centred = load_digits_splits(0, dequantise=False)
    assert torch.allclose((centred.test * DIGITS_LEVELS).frac(), torch.tensor(0.5), atol=1e-5)
    assert digits_discrete_log_likelihood(0.0) == pytest.approx(-64 * math.log(17))
