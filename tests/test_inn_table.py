"""`flowforge reproduce inn-table` at toy scale: it trains, selects on validation, measures test
accuracy, reconstruction errors and condition numbers, writes its table, and a re-run reuses
finished variants."""

import json

import torch

from conftest import CONFIGS, needs_mnist
from flowforge.cli import build_parser
from flowforge.experiments import inn_table
from flowforge.runs.config import dump_toml, load_config


def test_command_line_knows_the_experiment():
    args = build_parser().parse_args(["reproduce", "inn-table", "--steps", "5"])
    assert args.name == "inn-table" and args.steps == 5


def test_stats_count_non_finite_values_instead_of_dropping_them():
    stats = inn_table._stats(torch.tensor([1.0, float("inf"), 3.0, float("nan"), 2.0]))
    assert stats == {"median": 2.0, "min": 1.0, "max": 3.0, "non_finite": 2}
    assert inn_table._stats(torch.tensor([float("nan")]))["median"] is None


@needs_mnist
def test_table_trains_measures_and_reuses(tmp_path):
    # the toy budget: a tiny model on MNIST (the shipped config is for Fashion-MNIST at full size)
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(dump_toml(load_config(CONFIGS / "inn-classifier.toml",
                                          ['data.dataset="mnist"', "model.depth=1", "model.hidden=8",
                                           "train.valid_examples=50", "train.init_batch=64"])))
    kwargs = dict(config=tiny, steps=4, progress=False, svd_images=3, power_iters=3, test_examples=50,
                  variants=(("affine", "conv1x1", "fd"), ("additive", "shuffle", "nf")))
    text = inn_table.reproduce(tmp_path, **kwargs)
    again = inn_table.reproduce(tmp_path, **kwargs)
    assert again == text
    assert "| affine | conv1x1 | fd | 4 |" in text and "| additive | shuffle | nf | 4 |" in text
    rows = json.loads((tmp_path / "results.json").read_text())
    for row in rows:
        assert row["examples"] == 50 and 0.0 <= row["accuracy"] <= 1.0
        rec, jac = row["reconstruction"], row["jacobian"]
        assert rec["examples"] == 50 and rec["non_finite"] == 0 and rec["max"] < 1e-3
        assert jac["images"] == 3 and jac["condition"]["non_finite"] == 0
        assert jac["condition"]["min"] >= 1.0 - 1e-6  # sigma_max >= sigma_min
        assert jac["sigma_min"]["min"] <= jac["sigma_max"]["max"]
    assert (tmp_path / "results.md").read_text().count("\n|") >= 3


@needs_mnist
def test_flowforge_train_trains_resumes_and_evaluates_a_classifier(tmp_path, capsys):
    from flowforge.cli import main

    run = tmp_path / "run"
    assert main(["train", str(CONFIGS / "inn-classifier.toml"), "--run-dir", str(run), "--no-progress",
                 "--set", 'data.dataset="mnist"', "--set", "model.depth=1", "--set", "model.hidden=8",
                 "--set", "train.max_steps=3", "--set", "train.valid_examples=50", "--set", "train.init_batch=64"]) == 0
    assert "best validation accuracy" in capsys.readouterr().out
    assert (run / "checkpoints" / "best").is_dir() and (run / "config.toml").is_file()
    # the shared Trainer: a classifier run resumes like any other
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress", "--set", "train.max_steps=5"]) == 0
    assert "steps: 5;" in capsys.readouterr().out
    # `flowforge eval` reports accuracy for a classifier run (a bits/dim would be meaningless)
    assert main(["eval", str(run), "--examples", "200", "--svd-images", "4", "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out and (run / "inn-eval-test.json").is_file()
    assert main(["eval", str(run), "--split", "valid", "--no-progress"]) == 2
    assert "test split" in capsys.readouterr().err
