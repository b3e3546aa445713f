"""The LGF-MAF UCI configs (LGF paper tables 3-4) run end to end through the command line (train a
few steps, evaluate with the IS estimate, sample) on small fixture files in the standard formats."""

import json
import math

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import CONFIGS
from flowforge.cli import main
from flowforge.runs.config import load_config
from test_tabular import _hepmass_tables


def _power(root):
    rng = np.random.RandomState(0)
    raw = rng.rand(400, 8) * 10
    (root / "power").mkdir()
    np.save(root / "power" / "data.npy", raw)


def _gas(root):
    rng = np.random.RandomState(1)
    frame = pd.DataFrame(rng.randn(400, 8), columns=[f"s{i}" for i in range(8)])
    frame.insert(0, "Time", np.arange(400, dtype=float))
    frame.insert(1, "Meth", rng.rand(400))
    frame.insert(2, "Eth", rng.rand(400))
    (root / "gas").mkdir()
    frame.to_pickle(root / "gas" / "ethylene_CO.pickle")


def _hepmass(root):
    train, test = _hepmass_tables(np.random.RandomState(2), 400, 120)
    (root / "hepmass").mkdir()
    train.to_csv(root / "hepmass" / "1000_train.csv", index=False)
    test.to_csv(root / "hepmass" / "1000_test.csv", index=False)


def _miniboone(root):
    (root / "miniboone").mkdir()
    np.save(root / "miniboone" / "data.npy", np.random.RandomState(3).randn(400, 43) * 3 + 1)


def _bsds300(root):
    rng = np.random.RandomState(4)
    (root / "BSDS300").mkdir()
    with h5py.File(root / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for key, n in (("train", 200), ("validation", 60), ("test", 60)):
            f[key] = rng.randn(n, 64)


FIXTURES = {"power": _power, "gas": _gas, "hepmass": _hepmass, "miniboone": _miniboone, "bsds300": _bsds300}


# appendix C.2 tables 3-4 (one point of each grid: 10 layers, the larger p/q); BSDS300: the CIF code
APPENDIX_C = {
    "power": dict(layers=10, hidden=[128, 128], u_dim=10, pq_hidden=[200, 200], st_hidden=[128, 128]),
    "gas": dict(layers=10, hidden=[128, 128], u_dim=10, pq_hidden=[200, 200], st_hidden=[128, 128]),
    "hepmass": dict(layers=10, hidden=[128, 128], u_dim=10, pq_hidden=[512, 512], st_hidden=[128, 128]),
    "miniboone": dict(layers=10, hidden=[128, 128], u_dim=10, pq_hidden=[512, 512], st_hidden=[128, 128]),
    "bsds300": dict(layers=10, hidden=[512, 512], u_dim=15, pq_hidden=[128, 128], st_hidden=[128, 128]),
}


@pytest.mark.parametrize("dataset", sorted(APPENDIX_C))
def test_lgf_maf_configs_follow_appendix_c(dataset):
    cfg = load_config(CONFIGS / f"lgf-maf-{dataset}.toml")
    assert cfg.model.name == "lgf-maf" and cfg.data.dataset == dataset
    for key, value in APPENDIX_C[dataset].items():
        assert list(cfg.model.options[key]) == value if isinstance(value, list) else cfg.model.options[key] == value
    assert (cfg.model.options["valid_samples"], cfg.model.options["test_samples"]) == (10, 1000)
    assert cfg.train.patience == 30 and cfg.train.lr == 1e-3 and cfg.train.batch_size == 1000
    assert cfg.train.optimizer == "adam"


@pytest.mark.parametrize("dataset", sorted(FIXTURES))
def test_lgf_maf_uci_config_end_to_end(dataset, tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    FIXTURES[dataset](data)
    config = str(CONFIGS / f"lgf-maf-{dataset}.toml")
    small = ["train.max_steps=4", "train.batch_size=50", "train.init_batch=50", "train.eval_every=2",
             "train.checkpoint_every=2", "model.valid_samples=3", "eval.batch_size=40"]
    args = ["train", config, "--run-dir", str(run), "--data-dir", str(data), "--no-progress"]
    assert main(args + [a for s in small for a in ("--set", s)]) == 0
    assert main(["eval", str(run), "--data-dir", str(data), "--importance-samples", "6", "--repeats", "2",
                 "--no-progress"]) == 0
    result = json.loads((run / "eval-test.json").read_text())
    assert result["importance_samples"] == 6 and result["repeats"] == 2 and result["examples"] > 0
    assert result["log_prob"] == "importance-sampled"
    assert math.isfinite(result["nll"]) and result["elbo_gap"] >= 0
    assert result["is_relative_std"] is not None and math.isfinite(result["is_relative_std"])
    assert main(["sample", str(run), "--data-dir", str(data), "--n", "5", "--no-progress"]) == 0
    points = torch.load(run / "samples" / "samples-T0.7.pt")
    assert points.shape[0] == 5 and torch.isfinite(points).all()
