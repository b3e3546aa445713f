"""End to end through the command line: train a tiny Glow on MNIST, resume, evaluate, sample;
exact resume; non-finite handling; clear errors for bad input."""

import gzip
import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from conftest import CONFIGS, needs_mnist
from flowforge.cli import main
from flowforge.data.images import ImageSplit
from flowforge.errors import NonFiniteError
from flowforge.evaluation.bits_per_dim import evaluate_bpd
from flowforge.runs.config import load_config
from flowforge.runs.trainer import Trainer

TINY = str(CONFIGS / "tiny-mnist.toml")
QUIET = ["--no-progress"]


@needs_mnist
def test_train_resume_eval_sample(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", TINY, "--run-dir", str(run), "--set", "train.max_steps=10", *QUIET]) == 0
    assert main(["train", "--resume", "--run-dir", str(run), "--set", "train.max_steps=20", *QUIET]) == 0
    state = json.loads((run / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 20
    assert state["config"]["train"]["max_steps"] == 20
    assert main(["eval", str(run), "--batch-size", "2000", *QUIET]) == 0
    result = json.loads((run / "eval-test.json").read_text())
    assert result["examples"] == 10000 and math.isfinite(result["bpd"]) and 1.0 < result["bpd"] < 9.0
    assert result["log_prob"] == "exact"
    assert main(["sample", str(run), "--n", "16", "--sweep", "--interpolate", "--class-edit", "1:7", *QUIET]) == 0
    for name in ["samples-T0.7.png", "temperature-sweep.png", "interpolation.png", "class-edit-1-to-7.png"]:
        assert (run / "samples" / name).stat().st_size > 100
    report = (run / "report.md").read_text()
    assert f"{result['bpd']:.4f}" in report and "steps: 20" in report
    out = capsys.readouterr().out
    assert "test bits/dim" in out and "exact log-likelihood" in out
    assert "log-likelihood: exact log-likelihood" in report
    # a partial look: its own file, said to be partial in the output and in the report (after the figure)
    assert main(["eval", str(run), "--examples", "300", *QUIET]) == 0
    part = json.loads((run / "eval-test-first300.json").read_text())
    assert (part["examples"], part["split_examples"]) == (300, 10000) and math.isfinite(part["bpd"])
    assert "over the first 300 of 10000 examples (not the run's figure)" in capsys.readouterr().out
    assert json.loads((run / "eval-test.json").read_text()) == result
    report = (run / "report.md").read_text()
    whole, partial = report.index("## Evaluation on the test split"), report.index(
        "## Evaluation on the first 300 of 10000 examples of the test split (partial: not the run's figure)")
    assert whole < partial and f"{part['bpd']:.4f}" in report[partial:]
    assert main(["eval", str(run), "--examples", "20000", *QUIET]) == 2
    assert "--examples 20000: the test split has 10000 examples" in capsys.readouterr().err


def _weights(run):
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


def _metrics(run):
    rows = (run / "metrics.csv").read_text().splitlines()
    return [",".join(r.split(",")[:2] + r.split(",")[4:7]) for r in rows]  # drop timing columns


@needs_mnist
def test_resume_is_exact(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", TINY, "--run-dir", str(straight), *QUIET]) == 0
    assert main(["train", TINY, "--run-dir", str(split), "--set", "train.max_steps=10", *QUIET]) == 0
    # work after the last checkpoint is lost when a job is killed: simulate with an extra row
    with (split / "metrics.csv").open("a") as f:
        f.write("11,train,0,0,9,9,,0\n")
    assert main(["train", "--resume", "--run-dir", str(split), "--set", "train.max_steps=20", *QUIET]) == 0
    a, b = _weights(straight), _weights(split)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _metrics(straight) == _metrics(split)


@needs_mnist
def test_nonfinite_steps_are_skipped_then_rolled_back(tmp_path, monkeypatch):
    cfg = load_config(TINY, ["train.max_steps=20", "train.nonfinite_patience=3"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    real_loss = trainer.model.loss
    calls = {"n": 0}

    def flaky(batch, generator=None):
        out = real_loss(batch, generator=generator)
        calls["n"] += 1
        if 12 <= calls["n"] <= 14:  # three bad steps in a row after the step-10 checkpoint
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(trainer.model, "loss", flaky)
    state = trainer.fit()
    assert state.step == 20 and state.rollbacks == 1 and state.skipped_steps == 3
    assert state.lr_scale == pytest.approx(cfg.train.lr_backoff)
    assert "rollback" in (tmp_path / "run" / "metrics.csv").read_text()
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path / "run").values())


def test_eval_refuses_non_finite_examples():
    from flowforge.models import create

    model = create("glow", image_shape=(1, 8, 8), levels=2, depth=1, hidden=4)
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    model.initialize(images)
    split = ImageSplit(images, torch.zeros(6, dtype=torch.long))
    assert math.isfinite(evaluate_bpd(model, split, batch_size=4)["bpd"])
    with torch.no_grad():
        model.top_prior.base[0] = float("nan")
    with pytest.raises(NonFiniteError, match="6 of 6 examples"):
        evaluate_bpd(model, split, what="test split")


def test_unknown_config_field_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\ndepht = 3\n")
    assert main(["train", str(bad), "--run-dir", str(tmp_path / "r"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "model.depht" in err and "depth" in err


def test_bad_override_value_is_named(tmp_path, capsys):
    assert main(["train", TINY, "--set", "train.lr=fast", "--run-dir", str(tmp_path / "r"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert "train.lr" in err and "expected float" in err


def test_missing_checkpoint_is_reported(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nowhere"), *QUIET]) == 2
    assert "nowhere" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.toml").write_text("")
    assert main(["sample", str(tmp_path / "empty"), *QUIET]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_resume_without_checkpoint_is_reported(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    shutil.copy(TINY, tmp_path / "r" / "config.toml")
    assert main(["train", "--resume", "--run-dir", str(tmp_path / "r"), *QUIET]) == 2
    assert "nothing to resume" in capsys.readouterr().err


@needs_mnist
def test_truncated_idx_file_is_named(tmp_path, capsys):
    import os

    src = os.path.join(os.environ["FLOWFORGE_DATA"], "mnist")
    dst = tmp_path / "data" / "mnist"
    shutil.copytree(src, dst)
    payload = gzip.decompress((dst / "t10k-images-idx3-ubyte.gz").read_bytes())
    (dst / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(payload[:-1000]))
    run = tmp_path / "run"
    assert main(["train", TINY, "--run-dir", str(run), "--set", "train.max_steps=2", "--data-dir",
                 str(tmp_path / "data"), *QUIET]) == 0
    assert main(["eval", str(run), "--data-dir", str(tmp_path / "data"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte.gz" in err and "truncated" in err.lower()


def test_wrong_image_shape_is_named():
    from flowforge.errors import ShapeError
    from flowforge.models import create

    model = create("glow", image_shape=(1, 8, 8), levels=2, depth=1, hidden=4)
    with pytest.raises(ShapeError, match=r"\(B, 1, 8, 8\).*\(2, 3, 8, 8\)"):
        model.log_prob(torch.zeros(2, 3, 8, 8))


@needs_mnist
def test_interrupted_run_saves_and_resumes_exactly(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    assert main(["train", TINY, "--run-dir", str(straight), *QUIET]) == 0
    cfg = load_config(TINY)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    real_step = trainer._train_step

    def interrupt_at_7(step):
        if step == 7:
            raise KeyboardInterrupt
        return real_step(step)

    monkeypatch.setattr(trainer, "_train_step", interrupt_at_7)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    saved = json.loads((tmp_path / "run" / "checkpoints" / "last" / "state.json").read_text())
    assert saved["step"] == 7  # nothing done before the interrupt is lost
    assert main(["train", "--resume", "--run-dir", str(tmp_path / "run"), *QUIET]) == 0
    a, b = _weights(straight), _weights(tmp_path / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("command, hint", [("bench", False), ("train", True)])
def test_a_raw_ctrl_c_names_the_command_and_promises_a_resume_only_for_train(command, hint, monkeypatch, capsys):
    import flowforge.cli as cli

    parser = cli.build_parser()

    def interrupted(args):
        raise KeyboardInterrupt

    real_parse = parser.parse_args
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv: (ns := real_parse(argv), setattr(ns, "func", interrupted))[0])
    argv = ["bench", "flops"] if command == "bench" else ["train", str(CONFIGS / "tiny-mnist.toml")]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"flowforge {command}: interrupted")
    assert ("--resume" in err) == hint
