"""LGF-Glow (models/lgf_glow.py): Glow with a localised step after every coupling. Against Glow
at initialisation (ELBO, IS estimate, actnorm init), the IS estimator's properties, training,
sampling, the stochastic encode / decode, the refused options, and the command line end to end."""

import json
import math

import pytest
import torch

from conftest import CONFIGS, needs_mnist, perturb
from flowforge.bijections import ActNorm
from flowforge.cli import main
from flowforge.diagnostics.maps import invertible_map
from flowforge.errors import ConfigError
from flowforge.models import create
from flowforge.objectives.bits_per_dim import bits_per_dim
from flowforge.objectives.elbo import LocalisedStep, localised_steps
from test_lgf import _gen, _perturb, check_is_at_least_the_mean_elbo, check_is_grows_with_k

SHAPE = (1, 8, 8)
BASE = dict(image_shape=SHAPE, levels=2, depth=2, hidden=8)
SMALL_U = dict(st_blocks=1, st_hidden=4, pq_blocks=1, pq_hidden=8)


def _pair(seed: int = 0):
    """(lgf-glow, glow) of the same L, K, hidden, the Glow's weights those of the LGF-Glow's base."""
    torch.manual_seed(seed)
    lgf = create("lgf-glow", **BASE, **SMALL_U)
    glow = create("glow", **BASE)
    glow.load_state_dict({k: v for k, v in lgf.state_dict().items() if k in glow.state_dict()})
    return lgf, glow


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SHAPE), generator=_gen(seed), dtype=torch.uint8)


def _random_lgf_glow(seed: int = 0, scale: float = 0.3, base_scale: float = 0.1):
    """An actnorm-initialised LGF-Glow, its localised steps perturbed by `scale` (u matters) and
    every parameter by `base_scale` (non-trivial couplings), float64, eval mode."""
    torch.manual_seed(seed)
    model = create("lgf-glow", **BASE, **SMALL_U)
    model.initialize(_images(32, seed), generator=_gen(seed))
    perturb(model, seed=seed + 1, scale=base_scale)
    for step in localised_steps(model):
        _perturb(step, seed=seed + 2, scale=scale)
    return model.double().eval()


# ------------------------------------------------------------------ structure and initialisation


def test_a_localised_step_follows_every_coupling_at_its_levels_shape():
    model = create("lgf-glow", **BASE, **SMALL_U)
    assert len(localised_steps(model)) == BASE["levels"] * BASE["depth"]
    for level in range(BASE["levels"]):
        for step in model.level_steps(level):
            kinds = [type(layer).__name__ for layer in step.layers]
            assert kinds == ["ActNorm", "InvertibleConv1x1LU", "AffineCoupling", "LocalisedStep"]
            assert step.layers[3].bijection.x_shape == model.level_shapes[level]
    assert model.level_shapes == [(4, 4, 4), (8, 2, 2)]
    assert model.log_prob_kind == "importance-sampled"


def test_untrained_elbo_and_is_estimate_are_glows_exact_log_likelihood():
    """Zero-initialised s/t and p/q outputs: every step is the identity and log p(u|z) - log q(u|x)
    = 0, so with Glow's weights (perturbed: non-trivial couplings) ELBO = IS = Glow's log p(x)."""
    lgf, glow = _pair()
    perturb(glow, seed=3, scale=0.2)
    loaded = lgf.load_state_dict(glow.state_dict(), strict=False)
    assert not loaded.unexpected_keys
    step_names = {name for name, m in lgf.named_modules() if isinstance(m, LocalisedStep)}
    assert all(any(key.startswith(name + ".") for name in step_names) for key in loaded.missing_keys)
    lgf, glow = lgf.double().eval(), glow.double().eval()
    x = lgf.prepare(_images(16, 4), _gen(5)).double()
    with torch.no_grad():
        exact = glow.log_prob(x)
        elbo = lgf.elbo(x, _gen(6))
        estimate = lgf.log_prob(x, samples=7, generator=_gen(7))
    assert exact.std() > 1.0  # a non-trivial density
    torch.testing.assert_close(elbo, exact, rtol=0, atol=1e-10)
    torch.testing.assert_close(estimate, exact, rtol=0, atol=1e-10)


def test_actnorm_data_dependent_init_is_glows():
    """The inserted steps start as the identity, so Glow's data-dependent initialisation sets every
    actnorm (flow steps and coupling networks) of LGF-Glow as it does Glow's, on the same batch."""
    lgf, glow = _pair(seed=1)
    images = _images(32, 2)
    assert lgf.initialize(images, generator=_gen(3)) == glow.initialize(images, generator=_gen(3)) > 0
    actnorms = [name for name, m in glow.named_modules() if isinstance(m, ActNorm)]
    assert actnorms and all(bool(lgf.get_submodule(name).initialized) for name in actnorms)
    lgf_state = lgf.state_dict()
    for key, value in glow.state_dict().items():
        torch.testing.assert_close(lgf_state[key], value, rtol=0, atol=0, msg=key)


# ------------------------------------------------------------------ the IS estimate


def test_is_estimate_is_at_least_the_mean_elbo_of_its_draws():
    model = _random_lgf_glow(seed=0)
    x = model.prepare(_images(10, 1), _gen(2)).double()
    check_is_at_least_the_mean_elbo(model, x, samples=20, max_rows=70)


def test_is_estimate_grows_with_k_on_average():
    model = _random_lgf_glow(seed=3)
    x = model.prepare(_images(8, 4), _gen(5)).double()
    check_is_grows_with_k(model, x, ks=(1, 4, 16, 64), repeats=3)


# ------------------------------------------------------------------ training


def test_loss_is_the_mean_of_k_train_elbos_in_bits_per_dim():
    torch.manual_seed(0)
    model = create("lgf-glow", **BASE, **SMALL_U, train_samples=3)
    model.initialize(_images(16, 0), generator=_gen(0))
    for step in localised_steps(model):
        _perturb(step, seed=1, scale=0.3)
    images = _images(6, 2)
    out = model.loss((images, torch.zeros(6)), generator=_gen(3))
    g = _gen(3)
    x = model.prepare(images, g)
    again = bits_per_dim(model.elbo(x.repeat(3, 1, 1, 1), g).view(3, 6).mean(0), model.num_dims, model.n_bits)
    torch.testing.assert_close(out["loss"], again.mean())
    assert set(out) == {"loss", "bpd"}


def test_gradients_reach_every_parameter():
    model = _random_lgf_glow(seed=5).float().train()
    out = model.loss(_images(8, 6), generator=_gen(7))
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


def test_a_few_optimizer_steps_lower_the_loss():
    torch.manual_seed(0)
    model = create("lgf-glow", **BASE, **SMALL_U)
    images = _images(16, 1)
    model.initialize(images, generator=_gen(2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        return model.loss(images, generator=_gen(3))["loss"]

    with torch.no_grad():
        before = float(loss())
    for _ in range(10):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        after = float(loss())
    assert math.isfinite(after) and after < before - 0.1, (before, after)


# ------------------------------------------------------------------ sampling, encode / decode


def test_ancestral_samples_are_finite_images_and_t0_still_draws_u():
    model = _random_lgf_glow(seed=7, base_scale=0.02).float()  # 0.1 makes an affine coupling's inverse explode
    with torch.no_grad():
        s = model.sample(5, generator=_gen(0))
        cold = model.sample(5, temperature=0.0, generator=_gen(1))
        cold_again = model.sample(5, temperature=0.0, generator=_gen(1))
        cold_other = model.sample(5, temperature=0.0, generator=_gen(2))
        per_level = model.sample(5, temperature=[0.5, 0.7], generator=_gen(3))
    for images in (s, cold, per_level):
        assert images.shape == (5, *SHAPE) and torch.isfinite(images).all()
    torch.testing.assert_close(cold, cold_again, rtol=0, atol=0)  # seeded
    assert (cold - cold_other).abs().max() > 1e-3  # T = 0 fixes Glow's latents only: u ~ p still varies


def test_encode_decode_draw_u_and_are_not_a_round_trip():
    model = _random_lgf_glow(seed=8, base_scale=0.02)
    x = model.prepare(_images(4, 9), _gen(10)).double()
    with torch.no_grad():
        z = model.encode(x, generator=_gen(11))
        same = model.encode(x, generator=_gen(11))
        other = model.encode(x, generator=_gen(12))
        back = model.decode(z, generator=_gen(13))
    assert len(z) == BASE["levels"]
    for a, b in zip(z, same):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (z[-1] - other[-1]).abs().max() > 1e-3
    assert (back - x).abs().max() > 1e-3  # decode(encode(x)) != x: u is drawn from q, then from p
    with pytest.raises(TypeError, match="stochastic"):
        invertible_map(model)


# ------------------------------------------------------------------ refused options


@pytest.mark.parametrize("option, value, reason", [
    ("memory_saving", True, "inverse of a localised step draws a new u"),
    ("checkpoint_steps", True, "u would be drawn again"),
    ("num_classes", 10, "without their labels"),
])
def test_options_that_cannot_hold_for_a_stochastic_model_are_refused(option, value, reason):
    with pytest.raises(ConfigError, match=f"model.{option} = {value}.*{reason}"):
        create("lgf-glow", **BASE, **{option: value})


def test_bad_u_channels_are_refused():
    with pytest.raises(ValueError, match="u_channels"):
        create("lgf-glow", **BASE, u_channels=0)


# ------------------------------------------------------------------ command line


TINY = str(CONFIGS / "tiny-mnist.toml")
TINY_LGF = ["model.name=lgf-glow", "model.st_blocks=1", "model.st_hidden=4", "model.pq_blocks=1",
            "model.pq_hidden=8", "model.valid_samples=2", "train.max_steps=4", "train.batch_size=16",
            "train.init_batch=32", "train.eval_every=2", "train.checkpoint_every=2", "train.sample_every=4",
            "train.valid_examples=40", "data.n_valid=200"]


def _sets(overrides: list[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


@needs_mnist
def test_cli_trains_evaluates_by_importance_sampling_and_samples(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", TINY, "--run-dir", str(run), "--no-progress", *_sets(TINY_LGF)]) == 0
    assert main(["eval", str(run), "--split", "valid", "--importance-samples", "3", "--repeats", "2",
                 "--batch-size", "100", "--no-progress"]) == 0
    result = json.loads((run / "eval-valid.json").read_text())
    assert result["log_prob"] == "importance-sampled" and result["examples"] == 200
    assert result["importance_samples"] == 3 and result["repeats"] == 2 and len(result["bpd_repeats"]) == 2
    assert math.isfinite(result["bpd"]) and result["elbo_gap"] >= 0 and result["bpd_elbo"] >= result["bpd"]
    assert result["is_relative_std"] is not None and math.isfinite(result["is_relative_std"])
    out = capsys.readouterr().out
    assert "importance sampling: K = 3, 2 repeats" in out
    assert main(["sample", str(run), "--n", "4", "--no-progress"]) == 0
    assert (run / "samples" / "samples-T0.7.png").stat().st_size > 100


@needs_mnist
def test_cli_refuses_memory_saving_with_the_reason(tmp_path, capsys):
    code = main(["train", TINY, "--run-dir", str(tmp_path / "run"), "--no-progress",
                 *_sets(TINY_LGF + ["model.memory_saving=true"])])
    assert code == 2
    assert "model.memory_saving = True is not supported" in capsys.readouterr().err


def test_compiling_the_whole_flow_pass_is_refused():
    from flowforge.training.speed import SpeedOptions, apply_speed_options

    with pytest.raises(ConfigError, match="train.compile_flow .and train.cuda_graphs. is not supported"):
        apply_speed_options(create("lgf-glow", **BASE), SpeedOptions(compile_flow=True))
