"""A class-conditional Glow (`model.num_classes=10`: the top prior reads the MNIST label, Glow
section 5 / the public code's `ycond`) through the CLI: trained a few steps, then `sample` with
--interpolate and --class-edit, `diagnose` and `attack` run on it. encode / decode need no label
(only the prior reads one), so none of these needs a label."""

from __future__ import annotations

import json

import pytest

from conftest import CONFIGS, needs_mnist
from flowforge.cli import main

TINY = str(CONFIGS / "tiny-mnist.toml")
QUIET = ["--no-progress"]


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cond") / "run"
    assert main(["train", TINY, "--run-dir", str(run), "--set", "model.num_classes=10", "--set", "train.max_steps=6",
                 "--set", "train.eval_every=6", "--set", "train.checkpoint_every=6", "--set", "train.sample_every=6",
                 "--set", "train.valid_examples=64", *QUIET]) == 0
    return run


@needs_mnist
@pytest.mark.slow
def test_sample_interpolate_and_class_edit(conditional_run, capsys):
    assert main(["sample", str(conditional_run), "--n", "10", "--interpolate", "--pairs", "2",
                 "--class-edit", "1:7", *QUIET]) == 0
    samples = conditional_run / "samples"
    assert (samples / "interpolation.png").stat().st_size > 0
    assert (samples / "class-edit-1-to-7.png").stat().st_size > 0


@needs_mnist
@pytest.mark.slow
def test_diagnose_and_attack(conditional_run, tmp_path):
    out = tmp_path / "diag"
    assert main(["diagnose", str(conditional_run), "--examples", "8", "--out", str(out), "--jacobian-examples", "1",
                 "--condition-examples", "1", "--iters", "3", *QUIET]) == 0
    report = json.loads((out / "diagnose.json").read_text())
    assert report["reconstruction"]["non_finite"] == 0
    attack_out = tmp_path / "attack"
    assert main(["attack", str(conditional_run), "--examples", "4", "--steps", "5", "--out", str(attack_out),
                 *QUIET]) == 0
    assert json.loads((attack_out / "attack.json").read_text())["steps"] == 5


@needs_mnist
def test_eval_reports_the_marginal_with_the_conditional_beside(conditional_run, capsys):
    assert main(["eval", str(conditional_run), "--split", "test", "--examples", "40", *QUIET]) == 0
    out = capsys.readouterr().out
    assert "the figure above is p(x), the equal-weight mixture over the labels" in out
    result = json.loads((conditional_run / "eval-test-first40.json").read_text())
    assert result["bpd"] <= result["bpd_given_label"] + 3.33 / 784
