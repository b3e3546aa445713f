"""The training-recipe pieces: learning-rate schedules (equal to torch.optim.lr_scheduler's),
their config fields, data augmentation of training batches, and exact resume with both on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import CONFIGS
from flowforge.cli import main
from flowforge.data import readers
from flowforge.data.augment import augment_images
from flowforge.errors import ConfigError
from flowforge.runs.config import load_config
from flowforge.training.schedules import LRSchedule
from test_colour_data import make_cifar

QUIET = ["--no-progress"]


def _torch_rates(make_scheduler, steps: int, lr: float) -> list[float]:
    """The rate torch sets for optimizer steps 0 .. steps-1 (scheduler.step() after each)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_step_schedule_equals_multisteplr() -> None:
    milestones = [3, 7, 8, 15]
    ours = LRSchedule(1e-3, "step", milestones=tuple(milestones), gamma=0.1)
    theirs = _torch_rates(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma=0.1), 20, 1e-3)
    assert [ours.scheduled(s) for s in range(20)] == theirs  # bit for bit


def test_cosine_schedule_equals_cosineannealinglr() -> None:
    ours = LRSchedule(5e-4, "cosine", t_max=50, eta_min=1e-5)
    theirs = _torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=50, eta_min=1e-5), 51, 5e-4)
    assert [ours.scheduled(s) for s in range(51)] == pytest.approx(theirs, rel=1e-12, abs=0)
    assert ours.scheduled(50) == pytest.approx(1e-5) and ours.scheduled(80) == ours.scheduled(50)  # held after T_max


def test_warmup_equals_lambdalr_and_composes() -> None:
    ours = LRSchedule(1e-3, "step", milestones=(6,), gamma=0.5, warmup_steps=4)
    theirs = _torch_rates(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: min(1.0, (s + 1) / 4)), 10, 1e-3)
    assert [LRSchedule(1e-3, warmup_steps=4).rate(s) for s in range(10)] == theirs
    assert [ours.rate(s) for s in range(10)] == [ours.scheduled(s) * ours.warmup(s) for s in range(10)]
    assert ours.rate(0) == 1e-3 * 0.25 and ours.rate(6) == 1e-3 * 0.5


def test_schedule_from_config_epochs_and_cosine_default() -> None:
    cfg = load_config(CONFIGS / "tiny-mnist.toml",
                      ["train.lr_schedule=\"step\"", "train.lr_decay_epochs=[60, 120, 160]", "train.lr_decay_factor=0.1"])
    assert LRSchedule.from_train_config(cfg.train, steps_per_epoch=10).milestones == (600, 1200, 1600)
    cfg = load_config(CONFIGS / "tiny-mnist.toml", ["train.lr_schedule=\"cosine\""])
    assert LRSchedule.from_train_config(cfg.train, 10).t_max == cfg.train.max_steps


def test_cosine_over_a_time_budget_follows_the_larger_fraction() -> None:
    ours = LRSchedule(1e-3, "cosine", t_max=1000, t_max_seconds=100.0, eta_min=1e-5)
    assert ours.scheduled(0, 0.0) == pytest.approx(1e-3)
    assert ours.scheduled(10, 50.0) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)  # half the time, 1 % of the steps
    assert ours.scheduled(500, 1.0) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)  # half the steps, 1 % of the time
    assert ours.scheduled(10, 100.0) == ours.scheduled(10, 500.0) == pytest.approx(1e-5)  # held once spent
    timed = ["train.lr_schedule=\"cosine\"", "train.max_minutes=7.0"]
    cfg = load_config(CONFIGS / "tiny-mnist.toml", timed)
    assert LRSchedule.from_train_config(cfg.train, 10).t_max_seconds == 420.0
    cfg = load_config(CONFIGS / "tiny-mnist.toml", [*timed, "train.lr_cosine_steps=300"])
    schedule = LRSchedule.from_train_config(cfg.train, 10)
    assert (schedule.t_max, schedule.t_max_seconds) == (300, 0.0)  # explicit steps: the clock plays no part


@pytest.mark.parametrize("override, message", [
    ("train.lr_schedule=\"linear\"", "train.lr_schedule: expected one of"),
    ("train.lr_schedule=\"step\"", "needs train.lr_decay_steps or train.lr_decay_epochs"),
    ("train.lr_decay_steps=[10, 5]", "train.lr_decay_steps: expected positive integers in increasing order"),
    ("train.lr_decay_steps=[1.5]", "train.lr_decay_steps: expected positive integers"),
    ("data.augment=[\"crop\", \"rotate\"]", "data.augment: expected any of ['crop', 'flip']"),
    ("data.augment=[\"flip\", \"flip\"]", "each augmentation at most once"),
    ("data.augment_pad=-1", "data.augment_pad: expected a value in [0, 64]"),
])
def test_bad_recipe_fields_are_named(override: str, message: str) -> None:
    extra = [] if "lr_decay_steps" not in override else ["train.lr_schedule=\"step\""]
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "tiny-mnist.toml", [override, *extra])
    assert message in str(info.value) and "tiny-mnist.toml" in str(info.value)


def test_augment_refused_for_flat_data() -> None:
    with pytest.raises(ConfigError, match="augmentation is for image data sets"):
        load_config(CONFIGS / "density-2d.toml", ["data.augment=[\"flip\"]"])


def test_augment_images_crop_and_flip() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (16, 3, 8, 8), generator=gen, dtype=torch.uint8)
    flipped = augment_images(x, ("flip",), 4, torch.Generator().manual_seed(1))
    same = [bool(torch.equal(a, b)) for a, b in zip(flipped, x)]
    mirrored = [bool(torch.equal(a, b.flip(-1))) for a, b in zip(flipped, x)]
    assert all(s or m for s, m in zip(same, mirrored)) and 0 < sum(mirrored) < 16
    assert torch.equal(augment_images(x, ("crop",), 0, torch.Generator()), x)
    cropped = augment_images(x, ("crop",), 2, torch.Generator().manual_seed(2))
    assert cropped.shape == x.shape and cropped.dtype == torch.uint8
    offsets = torch.randint(0, 5, (2, 16), generator=torch.Generator().manual_seed(2))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for k in range(16):  # each image is the window of its padded copy at its own offset
        dy, dx = int(offsets[0, k]), int(offsets[1, k])
        assert torch.equal(cropped[k], padded[k, :, dy:dy + 8, dx:dx + 8])
    again = augment_images(x, ("crop", "flip"), 2, torch.Generator().manual_seed(3))
    assert torch.equal(again, augment_images(x, ("crop", "flip"), 2, torch.Generator().manual_seed(3)))


RESUME_SETS = ["data.dataset=\"cifar10\"", "data.n_valid=8", "model.levels=2", "model.depth=1", "model.hidden=8",
               "train.batch_size=8", "train.max_steps=8", "train.warmup_steps=2", "train.init_batch=16",
               "train.log_every=2", "train.eval_every=4", "train.checkpoint_every=4", "train.sample_every=100",
               "train.valid_examples=8", "data.augment=[\"crop\", \"flip\"]", "train.lr_schedule=\"step\"",
               "train.lr_decay_epochs=[1]", "train.lr_decay_factor=0.5"]


def test_resume_with_augment_and_schedule_is_exact(tmp_path: Path) -> None:
    readers._memo.clear()
    data = make_cifar(tmp_path / "data", per_batch=8)  # 40 training images, 32 after n_valid = 8
    straight, split = tmp_path / "straight", tmp_path / "split"
    base = ["train", str(CONFIGS / "tiny-mnist.toml"), "--data-dir", str(data), *QUIET]
    sets = [a for s in RESUME_SETS for a in ("--set", s)]
    assert main([*base, "--run-dir", str(straight), *sets]) == 0
    assert main([*base, "--run-dir", str(split), *sets, "--set", "train.max_steps=4"]) == 0
    assert main(["train", "--resume", "--run-dir", str(split), "--data-dir", str(data), "--set", "train.max_steps=8",
                 *QUIET]) == 0
    a = load_file(str(straight / "checkpoints" / "last" / "model.safetensors"))
    b = load_file(str(split / "checkpoints" / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rates = [r.split(",") for r in (straight / "metrics.csv").read_text().splitlines()]
    header = rates[0]
    lrs = [float(r[header.index("lr")]) for r in rates[1:] if r[header.index("event")] == "train"]
    assert lrs == [1e-3, 1e-3, 5e-4, 5e-4]  # steps 2, 4, 6, 8: halved after epoch 1 (4 steps)
    state = json.loads((split / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 8 and state["config"]["data"]["augment"] == ["crop", "flip"]
