"""Image models conditioned on a context vector (docs/conditional-flows.md, "Context-conditioned
Glow and RealNVP"): tiny `glow` and `realnvp` of tests/tiny_models.py built with `context_dim`.
Checks: the float64 change of variables at a fixed context against the autograd Jacobian, exact
inversion given the context, a log-density, latents and samples that depend on the context,
training on (images, context) batches, a state-dict round trip, the gradient modes of Glow, a Glow
step's bijection contract with a context, and the refusals of a missing, misshapen or unusable
context."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from bijection_checks import CHECKS, LayerCase, perturb
from flowforge.errors import ConfigError, ShapeError
from flowforge.models import create
from flowforge.models.glow import flow_step
from flowforge.runs.config import config_from_dict
from flowforge.runs.data_sources import make_source
from flowforge.runs.run_dir import build_model
from flowforge.training.loop import fit
from tiny_models import TINY_MODELS, tiny_batch

D = 3  # context values per example
NAMES = ("glow", "realnvp")


def contexts(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


def conditional(name: str, **extra):
    """The tiny model with context_dim = D, initialised on a batch and perturbed (zero-initialised
    context maps and output layers would make the context checks vacuous), in eval mode."""
    torch.manual_seed(0)
    model = create(name, **TINY_MODELS[name], context_dim=D, **extra)
    model.initialize(tiny_batch(name, n=32, seed=1)[0], contexts(32, seed=1))
    perturb(model, seed=2, scale=0.05)
    return model.eval()


def model_space(model, name: str, n: int, seed: int = 3) -> torch.Tensor:
    return model.prepare(tiny_batch(name, n=n, seed=seed)[0], torch.Generator().manual_seed(seed))


def _flat(latents: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([z.flatten() for z in latents])


@pytest.mark.parametrize("name", NAMES)
def test_float64_change_of_variables_at_a_fixed_context(name):
    model = conditional(name).double()
    x, c = model_space(model, name, 2).double(), contexts(2, seed=4).double()
    with torch.no_grad():
        log_prob = model.log_prob(x, c)
    assert log_prob.shape == (2,) and log_prob.dtype == torch.float64
    for i in range(2):
        xi, ci = x[i : i + 1], c[i : i + 1]
        jac = jacobian(lambda v, xi=xi, ci=ci: _flat(model.encode(v.view_as(xi), ci)), xi.flatten())
        with torch.no_grad():
            expected = model.base.log_prob_parts(model.encode(xi, ci), ci)[0] + torch.linalg.slogdet(jac)[1]
        assert abs(log_prob[i].item() - expected.item()) < 1e-8, (log_prob[i].item(), expected.item())


@pytest.mark.parametrize("name", NAMES)
def test_decode_inverts_encode_given_the_context(name):
    model = conditional(name)
    x, c = model_space(model, name, 4), contexts(4, seed=5)
    with torch.no_grad():
        latents = model.encode(x, c)
        torch.testing.assert_close(model.decode(latents, c), x, rtol=0, atol=1e-4)
        assert (model.decode(latents, c + 1.0) - x).abs().max() > 1e-3  # the inverse reads the context too


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_latents_and_samples_depend_on_the_context(name):
    model = conditional(name)
    x, c = model_space(model, name, 6), contexts(6, seed=6)
    with torch.no_grad():
        lp, lp_other = model.log_prob(x, c), model.log_prob(x, c + 1.0)
        z, z_other = _flat(model.encode(x, c)), _flat(model.encode(x, c + 1.0))
        samples = model.sample(6, temperature=0.7, context=c, generator=torch.Generator().manual_seed(0))
        again = model.sample(6, temperature=0.7, context=c + 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(lp).all() and (lp - lp_other).abs().min() > 1e-4, "log p(x | c) does not depend on c"
    assert (z - z_other).abs().max() > 1e-4, "the coupling layers do not read the context"
    assert samples.shape == (6, *TINY_MODELS[name]["image_shape"]) and torch.isfinite(samples).all()
    assert (samples - again).abs().max() > 1e-4


def test_a_fresh_conditional_glow_does_not_depend_on_the_context_yet():
    """Zero-initialised last convolutions and context maps: at initialisation c changes nothing."""
    torch.manual_seed(0)
    model = create("glow", **TINY_MODELS["glow"], context_dim=D)
    x, c = model_space(model, "glow", 4), contexts(4)
    with torch.no_grad():
        assert torch.equal(model.log_prob(x, c), model.log_prob(x, c + 5.0))


@pytest.mark.parametrize("name", NAMES)
def test_training_on_image_context_batches_lowers_the_loss(name):
    """`fit` calls model.loss(batch) on (images, context) tuples, as the run trainer does."""
    torch.manual_seed(0)
    model = create(name, **TINY_MODELS[name], context_dim=D)
    images, c = tiny_batch(name, n=32, seed=7)[0], contexts(32, seed=7)
    model.initialize(images, c)
    batch = (images, c)
    before = model.loss(batch, generator=torch.Generator().manual_seed(1))["loss"].item()
    fit(model, [batch], torch.optim.Adam(model.parameters(), lr=3e-3), steps=25, progress=False)
    after = model.loss(batch, generator=torch.Generator().manual_seed(1))["loss"].item()
    assert after < before - 0.05, (before, after)
    c_grad = c.clone().requires_grad_(True)
    model.loss((images, c_grad))["loss"].backward()
    assert torch.isfinite(c_grad.grad).all() and c_grad.grad.abs().sum() > 0, "the trained loss ignores the context"


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    model = conditional(name)
    copy = create(name, **TINY_MODELS[name], context_dim=D)
    copy.load_state_dict(model.state_dict())
    copy.eval()
    x, c = model_space(model, name, 4), contexts(4, seed=8)
    with torch.no_grad():
        first, loaded = ((m.log_prob(x, c), m.sample(4, 0.8, context=c, generator=torch.Generator().manual_seed(2)))
                         for m in (model, copy))
    for a, b in zip(first, loaded):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", [{"memory_saving": True}, {"checkpoint_steps": True}])
def test_glow_gradient_modes_carry_the_context(mode):
    """Reversible backprop and checkpointing give the autograd gradients, context included."""
    plain, other = conditional("glow"), conditional("glow", **mode)
    other.load_state_dict(plain.state_dict())
    x, c = model_space(plain, "glow", 4), contexts(4, seed=9)
    grads = []
    for model in (plain, other):
        model.train()
        ci = c.clone().requires_grad_(True)
        model.zero_grad()
        (-model.log_prob(x, ci).mean()).backward()
        grads.append([ci.grad] + [p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


STEP = LayerCase("glow-step-context", lambda: flow_step(4, 8, "affine", "sigmoid", "conv1x1-lu", seed=0,
                                                            context_dim=2), (4, 4, 4), context_dim=2, noise=0.1)


@pytest.mark.parametrize("check", CHECKS)
def test_a_glow_step_with_a_context_meets_the_bijection_contract(check):
    """actnorm and the 1x1 convolution let the context pass; the coupling network reads it."""
    CHECKS[check](STEP)


def _one_line(info) -> None:
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_a_missing_or_misshapen_context_is_refused(name):
    model = conditional(name)
    x, c = model_space(model, name, 4), contexts(4)
    images = tiny_batch(name, n=4)[0]
    calls = [lambda: model.log_prob(x), lambda: model.encode(x), lambda: model.decode(model.encode(x, c)),
             lambda: model.sample(4), lambda: model.loss(images)]
    for call in calls:
        with pytest.raises(ValueError, match=f"context_dim={D}: pass a context") as info:
            call()
        _one_line(info)
    for bad in (c[:, :2], c[:3], c[:, :, None]):
        for call in (lambda: model.log_prob(x, bad), lambda: model.encode(x, bad),
                     lambda: model.sample(4, context=bad), lambda: model.loss((images, bad))):
            with pytest.raises(ShapeError, match=rf"context must be \(4, {D}\)") as info:
                call()
            _one_line(info)


@pytest.mark.parametrize("name", NAMES)
def test_a_model_without_context_dim_refuses_a_context(name):
    model = create(name, **TINY_MODELS[name])
    x, c = model.prepare(tiny_batch(name, n=4)[0]), contexts(4)
    for call in (lambda: model.log_prob(x, c), lambda: model.encode(x, c), lambda: model.sample(4, context=c)):
        with pytest.raises(ValueError, match="without a context") as info:
            call()
        _one_line(info)
    model.loss(tiny_batch(name, n=4))  # (images, labels): the labels are no context, as before


def test_bad_constructions_are_refused():
    with pytest.raises(ValueError, match="not both"):
        create("glow", **TINY_MODELS["glow"], num_classes=10, context_dim=D)
    for name in NAMES:
        with pytest.raises(ValueError, match="context_dim must be >= 0"):
            create(name, **TINY_MODELS[name], context_dim=-1)


def test_the_config_option_builds_the_model_and_label_data_refuse_it():
    cfg = config_from_dict({"model": {"name": "glow", "levels": 2, "depth": 1, "hidden": 8, "context_dim": D},
                            "data": {"dataset": "mnist", "n_bits": 5}})
    model = build_model(cfg, {"image_shape": (1, 8, 8), "n_bits": 5})
    assert model.context_dim == D and model.top_prior.context_map is not None
    with pytest.raises(ConfigError, match="no context vectors"):
        make_source(cfg)


def test_compiled_sampling_is_handed_the_context():
    """`compile_sampling`'s pass (stood in for here: compiling is slow on a CPU) gets the context."""
    model = conditional("glow")
    calls = []
    model._compiled_sampling = lambda z, context: calls.append(context) or model._inverse(z, context)
    c = contexts(2, seed=10)
    with torch.no_grad():
        compiled = model.sample(2, context=c, generator=torch.Generator().manual_seed(3))
        model.train()
        eager = model.sample(2, context=c, generator=torch.Generator().manual_seed(3))
    assert len(calls) == 1 and torch.equal(calls[0], c)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_the_torch_distribution_view_takes_the_context(name):
    model = conditional(name)
    x, c = model_space(model, name, 3), contexts(3, seed=11)
    dist = model.distribution(c)
    with torch.no_grad():
        torch.testing.assert_close(dist.log_prob(x), model.log_prob(x, c), rtol=0, atol=0)
    draws = dist.rsample((2,))
    assert draws.shape == (2, 3, *TINY_MODELS[name]["image_shape"]) and torch.isfinite(draws).all()
    draws.sum().backward()  # reparameterised: gradients reach the conditional top prior
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if n.startswith("base.parts.1."))
