"""train.sync_free_skip: no per-step host read of isfinite, and the same run as the default."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from conftest import CONFIGS, needs_mnist
from flowforge.runs.config import load_config
from flowforge.runs.trainer import Trainer
from flowforge.training.ema import EMA
from flowforge.training.sync_free import MaskedUpdate

TINY = str(CONFIGS / "tiny-mnist.toml")


def _tiny_setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    opt = torch.optim.Adamax(model.parameters(), lr=0.1)
    ema = EMA(model, 0.9)
    return model, opt, ema


def _update(model, opt, ema, scale: float):
    """Gradients now (scaled), and the update (optimizer step + EMA) as a function, as the trainer."""
    opt.zero_grad()
    (model(torch.ones(2, 3)).sum() * scale).backward()

    def go():
        opt.step()
        ema.update(model, 1)
    return go


def _state(model, opt, ema):
    out = [p.detach().clone() for p in model.parameters()] + [p.detach().clone() for p in ema.shadow.parameters()]
    for p in model.parameters():
        out += [v.clone() for v in opt.state[p].values()]
    return out


def test_a_failed_step_leaves_weights_optimizer_state_and_ema_bit_identical():
    model, opt, ema = _tiny_setup()
    masked = MaskedUpdate(model, opt, ema.shadow)
    _update(model, opt, ema, 1.0)()  # creates the optimizer state
    assert masked.ready()
    before = _state(model, opt, ema)
    masked.apply(torch.tensor(False), _update(model, opt, ema, float("nan")))
    after = _state(model, opt, ema)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not masked.settle() and masked.failed
    masked.reset()
    assert masked.settle()


def test_a_good_step_is_the_plain_update():
    model, opt, ema = _tiny_setup()
    _update(model, opt, ema, 1.0)()
    twin, twin_opt, twin_ema = _tiny_setup()
    _update(twin, twin_opt, twin_ema, 1.0)()
    MaskedUpdate(model, opt, ema.shadow).apply(torch.tensor(True), _update(model, opt, ema, 1.0))
    _update(twin, twin_opt, twin_ema, 1.0)()
    assert all(torch.equal(a, b) for a, b in zip(_state(model, opt, ema), _state(twin, twin_opt, twin_ema)))


def _run(tmp_path, name: str, sync_free: bool, poison_step: int | None):
    cfg = load_config(TINY, ["train.max_steps=20", "train.nonfinite_patience=3",
                             f"train.sync_free_skip={'true' if sync_free else 'false'}"])
    trainer = Trainer(cfg, tmp_path / name, progress=False)
    real_loss, real_batch, current = trainer.model.loss, trainer._batch, {"step": -1}

    def batch(step):
        current["step"] = step
        return real_batch(step)

    def loss(b, generator=None):  # non-finite for three draws, until the rollback lowers the learning rate
        out = real_loss(b, generator=generator)
        # a skipped step moves past its batch, so one bad draw is only skipped: nonfinite_patience (3)
        # bad draws in a row make the host-checked run roll back, as the sync-free one does
        if poison_step is not None and 0 <= current["step"] - poison_step < 3 and trainer.state.lr_scale == 1.0:
            out["loss"] = out["loss"] * float("nan")
        return out

    trainer._batch, trainer.model.loss = batch, loss
    return trainer.fit(), load_file(str(tmp_path / name / "checkpoints" / "last" / "model.safetensors"))


@needs_mnist
def test_sync_free_run_equals_the_default_run_with_and_without_a_failure(tmp_path):
    for poison in (None, 13):
        (s_a, w_a), (s_b, w_b) = (_run(tmp_path, f"{mode}-{poison}", mode == "free", poison) for mode in ("host", "free"))
        def summary(s):
            return s.step, s.rollbacks, s.skipped_steps, s.lr_scale

        assert summary(s_a) == summary(s_b)
        assert s_a.rollbacks == (0 if poison is None else 1)
        assert w_a.keys() == w_b.keys() and all(torch.equal(w_a[k], w_b[k]) for k in w_a)
