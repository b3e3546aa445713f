"""The INN classifier (Behrmann et al. 2021, section 6): an exactly invertible body without
splits, a batch-norm -> ReLU -> linear head, cross-entropy training with the FD or NF regulariser,
and its training loop (selection on validation accuracy, runs readable by load_trained)."""

import pytest
import torch

from conftest import CONFIGS, needs_mnist
from flowforge.errors import ShapeError
from flowforge.evaluation.accuracy import classification_accuracy
from flowforge.models import create
from flowforge.objectives.regularisers import finite_difference_penalty
from flowforge.runs.config import load_config
from flowforge.runs.run_dir import load_trained
from flowforge.runs.trainer import Trainer
from flowforge.training.metrics import read_metrics

SHAPE = (1, 8, 8)


def _model(**kw):
    options = dict(image_shape=SHAPE, levels=2, depth=2, hidden=8, coupling="affine", permutation="conv1x1")
    options.update(kw)
    torch.manual_seed(0)
    model = create("inn-classifier", **options)
    images = torch.randint(0, 256, (32, *SHAPE), dtype=torch.uint8)
    model.initialize(images)
    with torch.no_grad():  # make the zero-initialised couplings non-trivial
        gen = torch.Generator().manual_seed(1)
        for p in model.transform.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model, images


@pytest.mark.parametrize("coupling", ["additive", "affine"])
@pytest.mark.parametrize("permutation", ["conv1x1", "shuffle"])
def test_body_is_exactly_invertible_and_keeps_the_dimension(coupling, permutation):
    model, images = _model(coupling=coupling, permutation=permutation)
    x = model.prepare(images)
    with torch.no_grad():
        (z,) = model.encode(x)
        back = model.decode([z])
        log_p = model.log_prob(x)
    assert z.shape == (32, 16, 2, 2) and z.numel() == x.numel()  # no splits: all D dimensions reach the head
    assert not torch.allclose(z.flatten(1), x.flatten(1), atol=1e-2)
    assert (back - x).abs().max() < 1e-5
    assert log_p.shape == (32,) and torch.isfinite(log_p).all()


def test_inputs_are_not_dequantised():
    model, images = _model()
    assert torch.equal(model.prepare(images), model.prepare(images))
    assert model.prepare(images).min() >= -0.5 and model.prepare(images).max() < 0.5


def test_loss_is_cross_entropy_and_reaches_every_parameter():
    model, images = _model()
    labels = torch.arange(32) % 10
    out = model.loss((images, labels))
    logits = model.logits(model.prepare(images))
    torch.testing.assert_close(out["loss"], torch.nn.functional.cross_entropy(logits, labels))
    assert "penalty" not in out
    out["loss"].backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_fd_regulariser_applies_every_kth_step_with_its_coefficient():
    model, images = _model(regulariser="fd", fd_coefficient=1e-2, fd_every=3)
    labels = torch.arange(32) % 10
    assert "penalty" not in model.loss((images, labels), step=1)
    out = model.loss((images, labels), generator=torch.Generator().manual_seed(5), step=3)
    x = model.prepare(images)
    expected = 1e-2 * finite_difference_penalty(lambda u: model.transform(u)[0].flatten(1),
                                                lambda v: model.transform.inverse(v.reshape(-1, 16, 2, 2))[0], x,
                                                eps=0.1, generator=torch.Generator().manual_seed(5))
    assert out["penalty"] > 0
    torch.testing.assert_close(out["penalty"], expected.detach())
    ce = torch.nn.functional.cross_entropy(model.logits(x), labels)
    torch.testing.assert_close(out["loss"], ce + expected)


def test_nf_regulariser_is_coefficient_times_mean_nll():
    model, images = _model(regulariser="nf", nf_coefficient=1e-3)
    out = model.loss((images, torch.arange(32) % 10), step=1)
    nll = -model.log_prob(model.prepare(images)).mean()
    torch.testing.assert_close(out["penalty"], (1e-3 * nll).detach())


def test_boundaries():
    model, _ = _model()
    with pytest.raises(ShapeError, match=r"\(B, 1, 8, 8\)"):
        model.logits(torch.zeros(2, 1, 8, 6))
    with pytest.raises(ValueError, match="regulariser"):
        create("inn-classifier", image_shape=SHAPE, regulariser="l2")
    with pytest.raises(ValueError, match="squeezed 3 times"):
        create("inn-classifier", image_shape=(1, 28, 28), levels=3)


def test_accuracy_counts_nonfinite_logits_as_wrong():
    model, images = _model()
    labels = model.eval().predict(images)  # every prediction right ...
    with torch.no_grad():
        model.head[2].bias[0] = float("nan")  # ... until every logit row holds a NaN
    result = classification_accuracy(model, images, labels, batch_size=10)
    assert result == {"accuracy": 0.0, "correct": 0, "examples": 32, "nonfinite_logits": 32}


@needs_mnist
def test_training_loop_learns_selects_on_validation_and_is_loadable(tmp_path):
    from flowforge.experiments.inn_training import train_classifier

    cfg = load_config(CONFIGS / "inn-classifier.toml",
                      ['data.dataset="mnist"', "model.depth=1", "model.hidden=8", 'model.regulariser="fd"',
                       "model.fd_every=2", "train.max_steps=40", "train.eval_every=20", "train.valid_examples=500",
                       "train.init_batch=64", "train.log_every=10"])
    summary = train_classifier(cfg, tmp_path / "run", progress=False)
    assert summary["steps"] == 40 and summary["skipped_steps"] == 0
    assert summary["best_valid_accuracy"] > 0.3  # chance is 0.1
    _, model, state = load_trained(tmp_path / "run")
    assert state["step"] == summary["best_step"] and state["best_valid"] == summary["best_valid_accuracy"]
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert [int(r["step"]) for r in rows if r["event"] == "valid"] == [20, 40]
    train_rows = [r for r in rows if r["event"] == "train"]
    assert len(train_rows) == 4 and all(float(r["train_penalty"]) > 0 for r in train_rows)
    assert all(0 <= float(r["train_accuracy"]) <= 1 for r in train_rows)


@needs_mnist
def test_classifier_run_resumes_exactly(tmp_path):
    """The classifier trains through the shared Trainer: 10 steps, then a resume to 20, equal the
    20 steps trained at once (weights and validation accuracy)."""
    base = ['data.dataset="mnist"', "model.depth=1", "model.hidden=8", 'model.regulariser="fd"', "model.fd_every=2",
            "train.eval_every=10", "train.valid_examples=200", "train.init_batch=64", "train.log_every=5",
            "train.checkpoint_every=5"]
    once = Trainer(load_config(CONFIGS / "inn-classifier.toml", [*base, "train.max_steps=20"]), tmp_path / "once",
                   progress=False).fit()
    Trainer(load_config(CONFIGS / "inn-classifier.toml", [*base, "train.max_steps=10"]), tmp_path / "split",
            progress=False).fit()
    twice = Trainer(load_config(CONFIGS / "inn-classifier.toml", [*base, "train.max_steps=20"]), tmp_path / "split",
                    progress=False).fit(resume=True)
    assert (twice.step, twice.best_valid, twice.best_step) == (once.step, once.best_valid, once.best_step)
    a, b = (load_trained(tmp_path / d, which="last")[1].state_dict() for d in ("once", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)
