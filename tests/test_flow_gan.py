"""Flow-GAN (Behrmann et al. 2021, supplement H): the hybrid objective's gradients go where they
should, lambda = inf is the plain bits/dim loss, and `reproduce flow-gan` runs end to end at toy
size, writing its table, curves and figure."""

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from conftest import CONFIGS, needs_mnist, perturb
from flowforge.evaluation.fid_features import FeatureClassifier
from flowforge.models import create
from flowforge.nets.discriminator import Discriminator
from flowforge.objectives.adversarial import discriminator_loss, flow_gan_generator_loss, gradient_penalty


def _glow():
    model = create("glow", image_shape=(1, 8, 8), levels=1, depth=2, hidden=8, coupling="additive",
                   permutation="conv1x1", n_bits=8)
    images = torch.randint(0, 256, (16, 1, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    model.initialize(images)
    perturb(model, seed=2)  # zero-initialised coupling outputs would stop every gradient before them
    return model, images


def _grads(module) -> list[bool]:
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters()]


def test_discriminator_gives_one_logit_per_image():
    d = Discriminator(1, 28, (8, 8, 16))
    assert d(torch.randn(5, 1, 28, 28)).shape == (5,)
    with pytest.raises(ValueError):
        Discriminator(1, 28, ())


def test_pure_mle_weight_is_exactly_the_plain_bits_per_dim_loss():
    model, images = _glow()
    hybrid = flow_gan_generator_loss(model, images, None, math.inf, generator=torch.Generator().manual_seed(3))
    plain = model.loss(images, generator=torch.Generator().manual_seed(3))["loss"]
    assert torch.equal(hybrid["loss"], plain) and "fake" not in hybrid
    with pytest.raises(ValueError):
        flow_gan_generator_loss(model, images, None, 0.5)  # a finite lambda needs a discriminator
    with pytest.raises(ValueError):
        flow_gan_generator_loss(model, images, None, -1.0)


def test_hybrid_loss_is_adversarial_plus_lambda_times_bpd():
    model, images = _glow()
    d = Discriminator(1, 8, (4, 8))
    out = flow_gan_generator_loss(model, images, d, 0.5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out["loss"], out["adversarial"] + 0.5 * out["bpd"])
    zero = flow_gan_generator_loss(model, images, d, 0.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(zero["loss"], zero["adversarial"])


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_generator_loss_moves_the_flow_and_the_discriminator_loss_only_the_discriminator(weight):
    model, images = _glow()
    d = Discriminator(1, 8, (4, 8))
    d.requires_grad_(False)  # as in the training loop's generator step
    out = flow_gan_generator_loss(model, images, d, weight, generator=torch.Generator().manual_seed(3))
    out["loss"].backward()
    assert all(p.grad is None for p in d.parameters())
    # the adversarial gradient reaches the flow through the samples, also with lambda = 0
    assert sum(_grads(model)) > 0.5 * len(list(model.parameters()))
    model.zero_grad(set_to_none=True)
    d.requires_grad_(True)
    d_out = discriminator_loss(d, model.prepare(images), out["fake"], gp_weight=10.0)
    d_out["loss"].backward()
    assert all(p.grad is None for p in model.parameters())  # the samples are detached for D
    assert all(_grads(d))
    assert d_out["gp"] >= 0 and 0 < d_out["d_real"] < 1


def test_gradient_penalty_is_zero_for_a_unit_slope_critic():
    class Linear(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, 0]  # ||grad|| = 1 everywhere

    real, fake = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    assert float(gradient_penalty(Linear(), real, fake)) == pytest.approx(0.0, abs=1e-12)


def _untrained_features(path, dataset="mnist"):
    path.mkdir(parents=True)
    torch.manual_seed(0)
    save_file(FeatureClassifier(1, 28, 10).state_dict(), str(path / "features.safetensors"))
    (path / "features.json").write_text(json.dumps({"dataset": dataset, "test_accuracy": 0.1, "features": 128,
                                                    "epochs": 0}))


@needs_mnist
def test_reproduce_flow_gan_end_to_end_at_toy_size(tmp_path):
    from flowforge.experiments import flow_gan
    from flowforge.experiments.flow_gan_training import LOG_COLUMNS, GANSettings
    from flowforge.runs.config import dump_toml, load_config

    tiny = tmp_path / "tiny.toml"
    tiny.write_text(dump_toml(load_config(CONFIGS / "flow-gan.toml", [
        'data.dataset="mnist"', "model.levels=1", "model.depth=1", "model.hidden=8", "train.eval_every=2",
        "train.init_batch=32", "train.batch_size=8"])))
    _untrained_features(tmp_path / "out" / "fid-features")
    settings = GANSettings(d_widths=(4, 8), valid_fid=40, valid_bpd=40, recon_images=16, svd_images=2, power_iters=2)
    kwargs = dict(config=tiny, steps=3, progress=False, fid_samples=40, diagnose_images=20, condition_examples=2,
                  settings=settings, figure=tmp_path / "fig.png")
    text = flow_gan.reproduce(tmp_path / "out", **kwargs)
    assert flow_gan.reproduce(tmp_path / "out", **kwargs) == text  # evaluated variants are kept
    for name in ("adversarial", "flow-gan", "mle"):
        assert f"| {name} |" in text
        with (tmp_path / "out" / name / "flow-gan-metrics.csv").open() as f:
            header = f.readline().strip().split(",")
            rows = f.readlines()
        assert tuple(header) == LOG_COLUMNS and len(rows) == 2  # steps 2 and 3
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    for row in rows:
        assert row["steps"] == 3 and row["bpd"]["examples"] == 10000
        assert row["selected"]["reconstruction"]["examples"] == 20
        assert row["fid"]["n"] == 40
        assert row["last"]["step"] == 3 and row["last"]["reconstruction"]["examples"] == 20
    assert (tmp_path / "fig.png").stat().st_size > 1000 and (tmp_path / "out" / "flow-gan.png").is_file()
