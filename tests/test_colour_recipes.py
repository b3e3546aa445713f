"""The papers' colour-data configs at toy scale on fixture files (written into tmp_path in each
set's published layout by test_colour_data's writers): each trains two steps through the command
line, then evaluates and samples. Sizes are overridden; the recipe (optimiser, schedule,
augmentation, coupling, ...) is the config's."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import CONFIGS
from flowforge.cli import main
from flowforge.data import readers
from test_colour_data import make_celeba, make_cifar, make_imagenet

QUIET = ["--no-progress"]
LOOP = ["train.max_steps=2", "train.max_minutes=0.0", "train.batch_size=4", "train.init_batch=8",
        "train.log_every=1", "train.eval_every=2", "train.checkpoint_every=2", "train.sample_every=100",
        "train.valid_examples=4", "train.warmup_steps=1", "data.n_valid=4", "eval.batch_size=8"]
GLOW = ["model.levels=2", "model.depth=1", "model.hidden=8"]
REALNVP = ["model.blocks=1", "model.hidden=4"]
LGF = [*REALNVP, "model.st_hidden=2", "model.pq_blocks=1", "model.pq_hidden=4", "model.valid_samples=2",
       "model.test_samples=2", "model.test_repeats=1"]
VAE = ["model.latent_dim=4", "model.channels=4", "model.depth=1", "model.prior_layers=2",
       "model.prior_hidden=[16, 16]", "model.glow_depth=2", "model.glow_hidden=8", "model.second_stage_width=16"]
CELEBA_LOOP = [s for s in LOOP if not s.startswith(("train.batch_size", "train.init_batch"))] + [
    "train.batch_size=3", "train.init_batch=3"]  # the fixture's train split holds 3 images

CASES = {
    "glow-cifar10": ("cifar10", GLOW),
    "glow-cifar10-additive": ("cifar10", GLOW),
    "glow-imagenet32": ("imagenet32", GLOW),
    "realnvp-cifar10": ("cifar10", REALNVP),
    "lgf-realnvp-cifar10": ("cifar10", LGF),
    "vae-flow-cifar10": ("cifar10", VAE),
    "vae-flow-celeba": ("celeba", VAE),
}


def fixture_data(root: Path, dataset: str) -> Path:
    readers._memo.clear()
    if dataset == "cifar10":
        return make_cifar(root)
    if dataset == "imagenet32":
        return make_imagenet(root, 32)
    return make_celeba(root)[0]


def train(config: str, run: Path, data: Path, sets: list[str]) -> None:
    args = ["train", str(CONFIGS / f"{config}.toml"), "--run-dir", str(run), "--data-dir", str(data), *QUIET]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0


@pytest.mark.parametrize("config", sorted(CASES))
def test_colour_config_trains_evaluates_samples(config: str, tmp_path: Path) -> None:
    dataset, sizes = CASES[config]
    data, run = fixture_data(tmp_path / "data", dataset), tmp_path / "run"
    train(config, run, data, [*(CELEBA_LOOP if dataset == "celeba" else LOOP), *sizes])
    state = json.loads((run / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 2 and state["config"]["data"]["dataset"] == dataset
    assert main(["eval", str(run), "--data-dir", str(data), *QUIET]) == 0
    result = json.loads((run / "eval-test.json").read_text())
    assert math.isfinite(result["bpd"]) and result["examples"] == {"cifar10": 5, "imagenet32": 5, "celeba": 2}[dataset]
    assert main(["sample", str(run), "--data-dir", str(data), "--n", "4", *QUIET]) == 0
    assert (run / "samples" / "samples-T0.7.png").stat().st_size > 100


def test_glow_cifar10_end_to_end_keeps_the_recipe(tmp_path: Path) -> None:
    """train, eval, sample (with interpolation and a class edit) of glow-cifar10; the resolved
    config keeps the paper's recipe apart from the overridden sizes."""
    data, run = make_cifar(tmp_path / "data", per_batch=8), tmp_path / "run"
    readers._memo.clear()
    train("glow-cifar10", run, data, [*LOOP, *GLOW])
    saved = json.loads((run / "checkpoints" / "last" / "state.json").read_text())["config"]
    assert saved["data"]["augment"] == ["crop"] and saved["model"]["coupling"] == "affine"
    assert (saved["train"]["optimizer"], saved["model"]["permutation"]) == ("adamax", "conv1x1")
    assert main(["eval", str(run), "--data-dir", str(data), *QUIET]) == 0
    assert main(["sample", str(run), "--data-dir", str(data), "--n", "4", "--interpolate", "--pairs", "2",
                 "--class-edit", "0:1", *QUIET]) == 0
    for name in ("samples-T0.7.png", "interpolation.png", "class-edit-0-to-1.png"):
        assert (run / "samples" / name).stat().st_size > 100
    assert "bits/dim" in (run / "report.md").read_text()


def test_inn_classifier_cifar10_trains_and_evaluates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The classifier has nothing to sample (docs/inn-classifier.md): train and eval only."""
    data, run = make_cifar(tmp_path / "data"), tmp_path / "run"
    readers._memo.clear()
    sets = [*LOOP, "model.levels=2", "model.depth=1", "model.hidden=8", "model.regulariser=\"fd\"",
            "model.fd_every=1"]
    train("inn-classifier-cifar10", run, data, sets)
    assert "steps: 2; best validation accuracy" in capsys.readouterr().out
    assert main(["eval", str(run), "--data-dir", str(data), "--svd-images", "1", *QUIET]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_attribute_edit_on_a_celeba_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Glow section 6.3 with CelebA's attributes: train 2 steps on the CelebA fixture, then
    --attribute Smiling (the fixture's training split has smiling and non-smiling faces)."""
    data, run = make_celeba(tmp_path / "data")[0], tmp_path / "run"
    readers._memo.clear()
    train("glow-cifar10", run, data, [*CELEBA_LOOP, *GLOW, "data.dataset=\"celeba\""])
    assert main(["sample", str(run), "--data-dir", str(data), "--n", "4", "--attribute", "Smiling", "--pairs", "2",
                 *QUIET]) == 0
    figure = run / "samples" / "attribute-Smiling.png"
    assert figure.stat().st_size > 100 and str(figure) in capsys.readouterr().out
    assert main(["sample", str(run), "--data-dir", str(data), "--attribute", "Smilling", *QUIET]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a CelebA attribute" in err[0] and "Smiling" in err[0] and "Young" in err[0]
    assert main(["sample", str(run), "--data-dir", str(data), "--attribute", "Bald", *QUIET]) == 2  # no bald face
    assert "with and without the attribute" in capsys.readouterr().err


def test_attribute_edit_refused_on_other_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = make_cifar(tmp_path / "data"), tmp_path / "run"
    readers._memo.clear()
    train("glow-cifar10", run, data, [*LOOP, *GLOW])
    assert main(["sample", str(run), "--data-dir", str(data), "--attribute", "Smiling", *QUIET]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "need a CelebA run" in err[0] and "cifar10" in err[0] and "5_o_Clock_Shadow" in err[0]


def test_mask_direction_matches_class_direction() -> None:
    import torch

    from conftest import small_glow
    from flowforge.models.latent_ops import attribute_direction, mask_direction

    model = small_glow()
    x = torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(0)) - 0.5
    labels = torch.tensor([0, 1, 2] * 4)
    by_class = attribute_direction(model, x, labels, 0, 2)
    keep = labels != 1
    by_mask = mask_direction(model, x[keep], labels[keep] == 2)
    assert all(torch.allclose(a, b) for a, b in zip(by_class, by_mask))
    with pytest.raises(ValueError, match="with and without"):
        mask_direction(model, x, torch.ones(12, dtype=torch.bool))


@pytest.mark.parametrize("trained_on, other", [("cifar10", "svhn"), ("svhn", "cifar10")])
def test_other_dataset_probe_cifar10_svhn(trained_on: str, other: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Supplement D, table 5: a CIFAR-10 model probed with SVHN (and the reverse), skipped with a
    note when the other set is absent (and never downloaded)."""
    import torch

    from flowforge.data import locate
    from flowforge.diagnostics.maps import invertible_map
    from flowforge.diagnostics.ood import other_dataset_probe, probe_reconstructions
    from flowforge.models import create
    from test_colour_data import make_svhn, no_network

    monkeypatch.delenv("FLOWFORGE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "SYSTEM_DIRS", {})
    monkeypatch.setattr(locate, "download_file", no_network)
    readers._memo.clear()
    model = create("glow", image_shape=(3, 32, 32), levels=2, depth=1, hidden=8).eval()
    model.initialize(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
    data = tmp_path / "data"
    skipped = other_dataset_probe(model, trained_on, 4, str(data), torch.Generator().manual_seed(0))
    assert skipped.name == other and skipped.images is None
    assert "other-dataset probe skipped" in skipped.note and other in skipped.note and "\n" not in skipped.note
    (make_svhn if other == "svhn" else make_cifar)(data)
    probe = other_dataset_probe(model, trained_on, 4, str(data), torch.Generator().manual_seed(0))
    assert probe.note == "" and probe.images.shape == (4, 3, 32, 32)
    assert float(probe.images.min()) >= -0.5 and float(probe.images.max()) < 0.5
    forward, inverse = invertible_map(model)
    summary = probe_reconstructions(forward, inverse, {probe.name: probe.images})[other]
    assert summary["mean"] is not None and summary["mean"] < 1e-3  # an untrained Glow inverts SVHN / CIFAR-10


def test_other_dataset_probe_unknown_pair() -> None:
    import torch

    from flowforge.diagnostics.ood import other_dataset_probe

    with pytest.raises(ValueError, match="no other data set known for 'celeba'"):
        other_dataset_probe(None, "celeba", 4, None, torch.Generator())
