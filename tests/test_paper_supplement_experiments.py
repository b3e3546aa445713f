"""Glow's permutation table over seeds (aggregation on synthetic numbers), the INN classifier's
training-dynamics rows, and `reproduce inn-regulariser-grid` at toy size."""

import csv
import json
import math

import pytest

from conftest import CONFIGS, needs_mnist
from flowforge.cli import build_parser
from flowforge.experiments.seed_table import aggregate, seeds_table
from flowforge.runs.config import dump_toml, load_config


def test_seed_aggregation_on_synthetic_numbers():
    rows = [{"coupling": "affine", "permutation": "conv1x1", "seed": s, "bpd": v} for s, v in enumerate((4.0, 4.2, 4.4))]
    rows += [{"coupling": "additive", "permutation": "reverse", "seed": 0, "bpd": 5.0},
             {"coupling": "additive", "permutation": "reverse", "seed": 1, "bpd": float("inf")}]
    groups = aggregate(rows, keys=("coupling", "permutation"), value="bpd")
    assert [(g["coupling"], g["permutation"]) for g in groups] == [("affine", "conv1x1"), ("additive", "reverse")]
    a, b = groups
    assert a["n"] == 3 and a["non_finite"] == 0
    assert a["mean"] == pytest.approx(4.2) and a["std"] == pytest.approx(0.2)  # sample std (n - 1)
    assert (a["min"], a["max"]) == (4.0, 4.4)
    assert b["n"] == 2 and b["non_finite"] == 1 and b["mean"] == 5.0 and math.isnan(b["std"])  # never dropped
    text = seeds_table(groups, ("coupling", "permutation"), "test bpd")
    assert "| affine | conv1x1 | 3 | 4.2000 | 0.2000 | 4.0000 – 4.4000 |" in text
    assert "| additive | reverse | 2 (1 non-finite) | 5.0000 | – | 5.0000 – 5.0000 |" in text


def test_reproduce_takes_seeds_for_glow_permutations_only(tmp_path):
    from flowforge.cli import main

    args = build_parser().parse_args(["reproduce", "glow-permutations", "--seeds", "2"])
    assert args.seeds == 2
    assert main(["reproduce", "inn-table", "--seeds", "2", "--out-dir", str(tmp_path)]) == 2
    assert main(["reproduce", "glow-permutations", "--seeds", "0", "--out-dir", str(tmp_path)]) == 2


@pytest.mark.slow
@needs_mnist
def test_glow_permutations_runs_every_seed(tmp_path):
    from flowforge.experiments import glow_permutations

    text = glow_permutations.reproduce(tmp_path, config=CONFIGS / "tiny-mnist.toml", steps=2, seeds=2, progress=False)
    assert text.count("| 2 |") == 6  # six variants, two seeds each
    result = json.loads((tmp_path / "results.json").read_text())
    assert len(result["runs"]) == 12 and {r["seed"] for r in result["runs"]} == {0, 1}
    assert (tmp_path / "seed1" / "affine-conv1x1" / "eval-test.json").is_file()


def _tiny_classifier(tmp_path, extra=()):
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(dump_toml(load_config(CONFIGS / "inn-classifier.toml",
                                          ['data.dataset="mnist"', "model.depth=1", "model.hidden=8",
                                           "train.valid_examples=50", "train.init_batch=64", *extra])))
    return tiny


@needs_mnist
def test_classifier_logs_dynamics_columns_every_n_steps(tmp_path):
    from flowforge.experiments.inn_training import train_classifier

    cfg = load_config(_tiny_classifier(tmp_path), ["train.max_steps=4", "train.diagnose_every=2",
                                                   'model.coupling="affine"'])
    train_classifier(cfg, tmp_path / "run", progress=False)
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    dyn = [r for r in rows if r["event"] == "diagnose"]
    assert [int(r["step"]) for r in dyn] == [0, 2, 4]
    for r in dyn:
        smax, smin = float(r["sigma_max"]), float(r["sigma_min"])
        assert 0 < smin <= smax and float(r["condition_median"]) <= float(r["condition_max"])
        assert float(r["condition_median"]) == pytest.approx(float(r["condition_median"]))
        assert int(r["condition_non_finite"]) == 0 and 0 <= float(r["dynamics_accuracy"]) <= 1


@needs_mnist
def test_regulariser_grid_end_to_end_at_toy_size(tmp_path):
    from flowforge.experiments import inn_regulariser_grid as grid

    kwargs = dict(config=_tiny_classifier(tmp_path), steps=2, progress=False, dynamics_every=1, svd_images=2,
                  power_iters=2, test_examples=20, grid=(("none", 0.0), ("nf", 1e-3), ("fd", 5e-5)),
                  figure=tmp_path / "fig.png")
    text = grid.reproduce(tmp_path / "out", **kwargs)
    assert grid.reproduce(tmp_path / "out", **kwargs) == text
    assert "| affine | conv1x1 | nf | 0.001 | 2 | 0 |" in text and "| affine | conv1x1 | fd | 5e-05 | 2 | 0 |" in text
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["run"] for r in rows] == ["affine-conv1x1-none", "affine-conv1x1-nf-0.001", "affine-conv1x1-fd-5e-05"]
    stored = load_config(tmp_path / "out" / "affine-conv1x1-fd-5e-05" / "config.toml")
    assert stored.model.options["fd_coefficient"] == 5e-05 and stored.model.options["regulariser"] == "fd"
    assert (tmp_path / "fig.png").stat().st_size > 1000
