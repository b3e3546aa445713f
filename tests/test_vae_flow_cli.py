"""The vae-flow commands end to end at toy scale: train phase 1 and phase 2 from the command
line, FID of the run's samples (with and without the Glow layer), the choice of extractor, and
(slow) the whole `reproduce vae-flow` experiment."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from conftest import CONFIGS
from flowforge.cli import main
from flowforge.evaluation.fid_features import FeatureClassifier

TINY = ["model.latent_dim=4", "model.channels=4", "model.depth=1", "model.prior_layers=2", "model.prior_hidden=[16, 16]",
        "model.glow_depth=2", "model.glow_hidden=8", "model.second_stage_width=16", "train.max_steps=2",
        "train.max_minutes=0.0", "train.valid_examples=64", "train.batch_size=16", "train.init_batch=32",
        "train.eval_every=1000", "train.checkpoint_every=1000", "train.sample_every=1000"]


def _features(folder):
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    model = FeatureClassifier()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "features.safetensors"))
    (folder / "features.json").write_text(json.dumps({"dataset": "fashion-mnist", "test_accuracy": 0.1,
                                                      "features": 128}))
    return folder


def _train(run, *extra):
    args = ["train", str(CONFIGS / "vae-flow-fashion-mnist.toml"), "--run-dir", str(run), "--no-progress"]
    for item in [*TINY, *extra]:
        args += ["--set", item]
    assert main(args) == 0


def test_two_phases_and_fid_from_the_command_line(tmp_path, capsys, monkeypatch):
    _train(tmp_path / "p1")
    _train(tmp_path / "p2", 'model.phase="glow"', f'model.init_from="{tmp_path / "p1"}"')
    feats = _features(tmp_path / "feats")
    for extra in ([], ["--no-glow"], ["--temperature", "1.0"]):
        assert main(["fid", str(tmp_path / "p2"), "--features", str(feats), "--n", "64", "--no-progress", *extra]) == 0
        assert "extractor: flowforge feature classifier" in capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "p2").glob("fid-*.json"))
    assert written == ["fid-n64-T1.0.json", "fid-n64-Tdefault-noglow.json", "fid-n64-Tdefault.json"]
    # the Inception extractor is reached from the flag and from the environment (its features:
    # tests/test_inception.py); explicit --features wins over the environment
    assert main(["fid", str(tmp_path / "p2"), "--inception-weights", str(tmp_path / "x.pth")]) == 2
    assert "x.pth: no such file" in capsys.readouterr().err
    assert main(["fid", str(tmp_path / "p2"), "--inception-weights", "x.pth", "--features", str(feats)]) == 2
    assert "not both" in capsys.readouterr().err
    monkeypatch.setenv("FLOWFORGE_INCEPTION_WEIGHTS", str(tmp_path / "env.pth"))
    assert main(["fid", str(tmp_path / "p2")]) == 2
    assert "env.pth: no such file" in capsys.readouterr().err
    assert main(["fid", str(tmp_path / "p2"), "--features", str(feats), "--n", "32", "--no-progress"]) == 0
    assert "extractor: flowforge feature classifier" in capsys.readouterr().out
    monkeypatch.delenv("FLOWFORGE_INCEPTION_WEIGHTS")
    assert main(["fid", str(tmp_path / "p2")]) == 2
    assert "--inception-weights PATH" in capsys.readouterr().err
    assert main(["fid", str(tmp_path / "p1"), "--features", str(feats), "--n", "32", "--no-progress"]) == 0
    # the bits/dim of a VAE-flow are the ELBO's bound, and `eval` says so
    assert main(["eval", str(tmp_path / "p2"), "--no-progress"]) == 0
    assert "upper bounds" in capsys.readouterr().out
    assert json.loads((tmp_path / "p2" / "eval-test.json").read_text())["log_prob"] == "elbo"


def test_glow_phase_without_a_phase_one_run_is_refused(tmp_path, capsys):
    args = ["train", str(CONFIGS / "vae-flow-fashion-mnist.toml"), "--run-dir", str(tmp_path / "p2"), "--no-progress"]
    for item in [*TINY, 'model.phase="glow"']:
        args += ["--set", item]
    assert main(args) == 2
    assert "init_from" in capsys.readouterr().err


@pytest.mark.slow
def test_reproduce_vae_flow_at_toy_scale(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FLOWFORGE_INCEPTION_WEIGHTS", raising=False)  # the feature network below
    _features(tmp_path / "fid-features")
    assert main(["reproduce", "vae-flow", "--out-dir", str(tmp_path), "--steps", "2", "--fid-samples", "100",
                 "--no-progress"]) == 0
    text = (tmp_path / "results.md").read_text()
    assert f"table written to {tmp_path / 'results.md'}" in capsys.readouterr().out
    assert "two-stage VAE" in text and "standalone Glow" in text and "Table 4 analog" in text
    assert (tmp_path / "glow-vs-vae.png").stat().st_size > 500
