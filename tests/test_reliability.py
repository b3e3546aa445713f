"""Reliability of a run: signals stop at a step boundary (resume stays bit-identical), skipped
steps move past their batch and rollbacks are bounded, the run-directory lock, checkpoint
checksums, and non-finite samples marked and reported."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import CONFIGS, needs_mnist
from flowforge.cli import main
from flowforge.errors import NonFiniteError
from flowforge.runs import trainer as trainer_module
from flowforge.runs.config import load_config
from flowforge.runs.trainer import Trainer
from flowforge.training.interrupts import TrainingInterrupted

TINY = str(CONFIGS / "tiny-mnist.toml")
QUIET = ["--no-progress"]
SMALL = ["train.max_steps=6", "train.checkpoint_every=3", "train.eval_every=3", "train.sample_every=6",
         "train.log_every=3", "train.batch_size=8", "train.init_batch=16", "train.valid_examples=50",
         "train.warmup_steps=2"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _sets(values):
    return [a for v in values for a in ("--set", v)]


def _weights(run, which="last"):
    ck = Path(run) / "checkpoints" / which
    return {**{f"model.{k}": v for k, v in load_file(str(ck / "model.safetensors")).items()},
            **{f"ema.{k}": v for k, v in load_file(str(ck / "ema.safetensors")).items()}}


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run of SMALL (6 steps)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", TINY, "--run-dir", str(run), *_sets(SMALL), *QUIET]) == 0
    return run


def _raise_signal(sig=signal.SIGINT):
    os.kill(os.getpid(), sig)


def _hook(trainer, phase, monkeypatch, at_step, sig):
    """Make `sig` arrive in `phase` of step `at_step` (or, for 'save', in the first save at or after it)."""
    fired = {"done": False}

    def fire():
        if not fired["done"] and trainer.state.step >= at_step:
            fired["done"] = True
            _raise_signal(sig)

    if phase == "loss":
        real = trainer.model.loss
        monkeypatch.setattr(trainer.model, "loss", lambda batch, generator=None: (fire(), real(batch, generator=generator))[1])
    elif phase == "backward":
        next(trainer.model.parameters()).register_hook(lambda g: (fire(), g)[1])
    elif phase == "after-backward":
        real_clip = torch.nn.utils.clip_grad_norm_
        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: (fire(), real_clip(*a, **k))[1])
    elif phase == "optimizer-step":
        real_step = trainer.optimizer.step
        monkeypatch.setattr(trainer.optimizer, "step", lambda *a, **k: (real_step(*a, **k), fire())[0])
    elif phase == "ema-update":
        real_update = trainer.ema.update
        monkeypatch.setattr(trainer.ema, "update", lambda *a, **k: (real_update(*a, **k), fire())[0])
    elif phase == "save":
        real_save = trainer_module.save_checkpoint
        monkeypatch.setattr(trainer_module, "save_checkpoint", lambda *a, **k: (fire(), real_save(*a, **k))[1])
    elif phase == "validation":
        real_validate = trainer._validate
        monkeypatch.setattr(trainer, "_validate", lambda log: (fire(), real_validate(log))[1])
    return fired


PHASES = [("loss", signal.SIGINT), ("backward", signal.SIGINT), ("after-backward", signal.SIGTERM),
          ("optimizer-step", signal.SIGINT), ("ema-update", signal.SIGTERM), ("save", signal.SIGINT),
          ("validation", signal.SIGTERM)]


@needs_mnist
@pytest.mark.parametrize("phase,sig", PHASES, ids=[p for p, _ in PHASES])
def test_signal_in_any_phase_stops_at_a_step_boundary_and_resumes_bit_identically(phase, sig, straight, tmp_path,
                                                                                   monkeypatch):
    run = tmp_path / "run"
    trainer = Trainer(load_config(TINY, SMALL), run, progress=False)
    fired = _hook(trainer, phase, monkeypatch, at_step=4 if phase not in ("save", "validation") else 3, sig=sig)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    monkeypatch.undo()
    assert fired["done"] and info.value.exit_code == 128 + sig
    saved = json.loads((run / "checkpoints" / "last" / "state.json").read_text())
    # the step under way completed and was saved with its counter
    assert saved["step"] == (5 if phase not in ("save", "validation") else 3) == info.value.step
    assert not (run / ".lock").exists()
    assert main(["train", "--resume", "--run-dir", str(run), *QUIET]) == 0
    _assert_identical(_weights(straight), _weights(run))
    _assert_identical(_weights(straight, "best"), _weights(run, "best"))


@needs_mnist
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_exit_code_and_one_line_on_signal(sig, code, tmp_path, monkeypatch, capsys):
    real = Trainer._train_step

    def step(self, s):
        if s == 2:
            _raise_signal(sig)
        return real(self, s)

    monkeypatch.setattr(Trainer, "_train_step", step)
    run = tmp_path / "run"
    assert main(["train", TINY, "--run-dir", str(run), *_sets(SMALL), *QUIET]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"flowforge train: {signal.Signals(sig).name} received: stopped after step 3")
    assert "--resume" in err[-1] and "Traceback" not in "\n".join(err)
    assert json.loads((run / "checkpoints" / "last" / "state.json").read_text())["step"] == 3


@needs_mnist
def test_raw_keyboard_interrupt_after_the_update_keeps_the_last_consistent_checkpoint(straight, tmp_path, monkeypatch):
    """Without the handler (e.g. a KeyboardInterrupt raised in code): never save weights ahead of the counter."""
    run = tmp_path / "run"
    trainer = Trainer(load_config(TINY, SMALL), run, progress=False)
    real_step = trainer.optimizer.step

    def step_then_interrupt(*a, **k):
        real_step(*a, **k)
        if trainer.state.step == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer.optimizer, "step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.undo()
    assert json.loads((run / "checkpoints" / "last" / "state.json").read_text())["step"] == 3
    assert main(["train", "--resume", "--run-dir", str(run), *QUIET]) == 0
    _assert_identical(_weights(straight), _weights(run))


# ------------------------------------------------------------------ non-finite steps


def _bad_at_draw(trainer, monkeypatch, bad_draw):
    """The loss is NaN exactly for the batch the trainer draws at index `bad_draw` (data-deterministic)."""
    bad_batch = trainer._batch(bad_draw)[0].clone()
    real = trainer.model.loss

    def loss(batch, generator=None):
        out = real(batch, generator=generator)
        if torch.equal(batch[0], bad_batch):
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(trainer.model, "loss", loss)


@needs_mnist
def test_a_deterministically_bad_batch_is_skipped_once_and_resume_stays_exact(tmp_path, monkeypatch):
    cfg = load_config(TINY, SMALL + ["train.nonfinite_patience=2"])
    straight = Trainer(cfg, tmp_path / "straight", progress=False)
    _bad_at_draw(straight, monkeypatch, 4)
    state = straight.fit()
    assert state.step == 6 and state.skipped_steps == 1 and state.draws_skipped == 1 and state.rollbacks == 0
    # the same run interrupted after the skip (at step 5) and resumed: bit-identical
    split = Trainer(cfg, tmp_path / "split", progress=False)
    _bad_at_draw(split, monkeypatch, 4)
    real = split._train_step
    monkeypatch.setattr(split, "_train_step", lambda s: (_raise_signal() if s == 4 and split.state.draws_skipped else None,
                                                         real(s))[1])
    with pytest.raises(TrainingInterrupted):
        split.fit()
    assert json.loads((tmp_path / "split" / "checkpoints" / "last" / "state.json").read_text())["draws_skipped"] == 1
    resumed = Trainer(cfg, tmp_path / "split", progress=False)
    _bad_at_draw(resumed, monkeypatch, 4)
    resumed.fit(resume=True)
    _assert_identical(_weights(tmp_path / "straight"), _weights(tmp_path / "split"))


@needs_mnist
def test_a_step_that_is_always_non_finite_stops_after_bounded_rollbacks(tmp_path, monkeypatch, capsys):
    """Non-finite at step index 4 whatever the batch: the run rolls back to step 3 a bounded number
    of times, then stops with one line and exit 2."""
    real = Trainer._train_step

    def step(self, s):
        out = real(self, s)
        return None if s == 4 else out

    monkeypatch.setattr(Trainer, "_train_step", step)
    run = tmp_path / "run"
    assert main(["train", TINY, "--run-dir", str(run), *_sets(SMALL + ["train.nonfinite_patience=2"]), *QUIET]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("flowforge train: error: training makes no progress: rolled back "
                              f"{trainer_module.MAX_ROLLBACKS_WITHOUT_PROGRESS + 1} times to the checkpoint at step 3")
    assert not (run / ".lock").exists()


@needs_mnist
def test_always_non_finite_stops_before_the_first_checkpoint(tmp_path, monkeypatch):
    cfg = load_config(TINY, SMALL)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    real = trainer.model.loss
    monkeypatch.setattr(trainer.model, "loss",
                        lambda b, generator=None: {**(o := real(b, generator=generator)), "loss": o["loss"] * float("nan")})
    with pytest.raises(NonFiniteError, match="before the first checkpoint"):
        trainer.fit()


# ------------------------------------------------------------------ the run lock

_HOLD = """
import sys, time
from flowforge.runs.run_lock import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


@needs_mnist
def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(straight, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    env = {**os.environ, "PYTHONPATH": SRC}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _tree(run)
        assert main(["train", TINY, "--run-dir", str(run), *_sets(SMALL), *QUIET]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by PID {holder.pid} on host {socket.gethostname()}" in err[0]
        assert _tree(run) == before  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale and is taken over
    assert (run / ".lock").exists()
    assert main(["train", TINY, "--run-dir", str(run), *_sets(SMALL), *QUIET]) == 0
    assert f"taking over the stale lock of PID {holder.pid}" in capsys.readouterr().err
    assert not (run / ".lock").exists()
    _assert_identical(_weights(straight), _weights(run))


# ------------------------------------------------------------------ checksums


@needs_mnist
def test_a_flipped_byte_in_the_tensor_data_is_refused_and_old_checkpoints_warn(straight, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(straight, run)
    ema = run / "checkpoints" / "best" / "ema.safetensors"
    data = bytearray(ema.read_bytes())
    data[-9] ^= 0x01  # inside the last tensor's data: safetensors still reads it
    ema.write_bytes(bytes(data))
    load_file(str(ema))
    assert main(["eval", str(run), "--examples", "50", *QUIET]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ema.safetensors is corrupted" in err[0] and str(ema) in err[0]
    assert not (run / "eval-test-first50.json").exists()
    # a checkpoint written before checksums: loads, with a warning
    shutil.rmtree(run)
    shutil.copytree(straight, run)
    for ck in ("best", "last"):
        (run / "checkpoints" / ck / "checksums.json").unlink()
    assert main(["eval", str(run), "--examples", "50", *QUIET]) == 0
    assert "no checksums.json (written by an older flowforge)" in capsys.readouterr().err


# ------------------------------------------------------------------ non-finite samples


def test_non_finite_samples_are_marked_red_counted_and_reported(tmp_path, capsys):
    from PIL import Image

    from flowforge.runs.report import write_report
    from flowforge.viz import image_figures

    class Fake(torch.nn.Module):
        n_bits = 8

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def sample(self, n, temperature, context=None, generator=None):
            x = torch.zeros(n, 1, 8, 8)
            x[1, 0, 3, 3] = float("nan")
            x[2] = float("inf")
            return x

    path = image_figures.sample_grid(Fake(), tmp_path / "samples" / "grid.png", 4, 0.7, 0)
    err = capsys.readouterr().err
    assert "2 of 4 samples" in err and "non-finite" in err
    image = Image.open(path).convert("RGB")
    pad, size = 2, 8
    cell = lambda i: image.crop((pad + i * (size + pad), pad, pad + i * (size + pad) + size, pad + size))  # noqa: E731
    assert cell(0).getpixel((0, 4)) == (128, 128, 128)  # a finite sample: gray as before
    for i in (1, 2):  # red with a white cross
        assert cell(i).getpixel((0, 4)) == (220, 0, 0) and cell(i).getpixel((0, 0)) == (255, 255, 255)
    assert json.loads((tmp_path / "samples" / "nonfinite.json").read_text()) == {"grid.png": {"non_finite": 2, "total": 4}}
    report = write_report(tmp_path).read_text()
    assert "## Non-finite samples" in report and "samples/grid.png: **2 of 4**" in report
