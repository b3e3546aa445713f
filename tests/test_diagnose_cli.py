"""`flowforge diagnose`, `flowforge attack`, `train.diagnose_every` and `reproduce attack-fashion`
end to end on one tiny Glow trained for a few steps on 5-bit MNIST."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil

import pytest
import torch

from conftest import CONFIGS, needs_mnist
from flowforge.cli import main
from flowforge.data.images import load_image_split
from flowforge.experiments import attack as attack_experiment
from flowforge.runs.attack_run import cell_centres

TINY = str(CONFIGS / "tiny-mnist.toml")
QUIET = ["--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("diag") / "run"
    assert main(["train", TINY, "--run-dir", str(run), "--set", "train.max_steps=10", "--set", "data.n_bits=5",
                 "--set", "train.diagnose_every=5", *QUIET]) == 0
    return run


@needs_mnist
def test_diagnose_every_logs_stability_numbers(tiny_run):
    with (tiny_run / "metrics.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["event"] == "diagnose"]
    assert [int(r["step"]) for r in rows] == [0, 5, 10]  # step 0: the initialised model
    for r in rows:
        assert float(r["recon_non_finite"]) == 0 and 0 <= float(r["recon_max"]) < 1e-3
        assert 1.0 <= float(r["condition_median"]) <= float(r["condition_max"]) < math.inf


@needs_mnist
def test_diagnose_cli_writes_report_json_and_figures(tiny_run, tmp_path, capsys):
    out = tmp_path / "diag"
    assert main(["diagnose", str(tiny_run), "--examples", "40", "--out", str(out), "--ood", "--ood-examples", "8",
                 "--jacobian-examples", "1", "--condition-examples", "2", "--iters", "5", *QUIET]) == 0
    r = json.loads((out / "diagnose.json").read_text())
    assert r["examples"] == 40 and r["dims"] == 784 and r["reconstruction"]["examples"] == 40
    assert r["reconstruction"]["non_finite"] == 0 and r["reconstruction"]["max"] < 1e-3
    assert r["exact"]["logdet_abs_error"]["max"] < 1e-6
    # exact spectra of F and F^-1 at matching points: sigma_max(F^-1) = 1 / sigma_min(F)
    assert r["exact"]["inverse_sigma_max"]["max"] == pytest.approx(1 / r["exact"]["forward_sigma_min"]["max"], rel=1e-6)
    assert len(r["drift"]) == 9 and all(row["non_finite"] == 0 for row in r["drift"])
    assert set(r["ood"]) == {"gaussian", "rademacher", "constant", "fashion-mnist"}
    assert all(s["examples"] == 8 for s in r["ood"].values())
    report = (out / "report.md").read_text()
    assert "Reconstruction error" in report and "fashion-mnist" in report and "| 9 |" in report
    for name in ("reconstruction-errors.png", "singular-values.png"):
        assert (out / name).stat().st_size > 1000
    assert "reconstruction error over 40 test examples" in capsys.readouterr().out


@needs_mnist
def test_attack_cli_writes_curve_worst_images_and_json(tiny_run, tmp_path):
    out = tmp_path / "attack"
    assert main(["attack", str(tiny_run), "--examples", "3", "--steps", "4", "--out", str(out), *QUIET]) == 0
    s = json.loads((out / "attack.json").read_text())
    assert s["steps"] == 4 and s["epsilon"] == 0.5 / 2**5 and s["final"]["examples"] == 3 and s["n_bits"] == 5
    assert s["largest_finite_error"] >= max(s["final"]["max"], s["start"]["max"])
    raw = torch.load(out / "attack-result.pt")
    assert raw["errors"].shape == (5, 3)  # before each step and after the last
    images = load_image_split("mnist", "test", data_dir=os.environ["FLOWFORGE_DATA"]).images[:3]
    assert (raw["x_attacked"] - cell_centres(images, 5)).abs().max() <= s["epsilon"] + 1e-6
    for name in ("attack-curve.png", "attack-worst.png"):
        assert (out / name).stat().st_size > 500


@needs_mnist
def test_reproduce_attack_puts_models_side_by_side(tiny_run, tmp_path):
    out = tmp_path / "exp"
    models = {"first": TINY, "second": TINY}
    for label in models:  # finished runs are continued (nothing left to train), then attacked
        shutil.copytree(tiny_run, out / label)
    table = attack_experiment.reproduce(out, models=models, examples=2, attack_steps=2, progress=False, screen=20)
    for label in models:
        assert f"| {label} | first 2 | 10 |" in table and f"| {label} | worst 2 of first 20 | 10 |" in table
    screened = json.loads((out / "first" / "attack-screen20" / "attack.json").read_text())
    assert screened["screened"] == 20 and len(screened["indices"]) == 2 and max(screened["indices"]) < 20
    for name in ("attack-curves.png", "attack-screen20-curves.png"):
        assert name in (out / "results.md").read_text() and (out / name).stat().st_size > 1000
