"""One contract over every registered model (`models.available()`), each built from its tiny setting
in tiny_models.py (a model registered without a row fails here). Checks: the float64 log-density
of exact flat models against log N(f(x)) + log|det| of the autograd Jacobian; decode(encode(x)) == x
for invertible image models; finite samples of the right shape; a state-dict round trip giving the
same numbers; evaluation that is deterministic under a fixed seed."""

import pytest
import torch
from torch.autograd.functional import jacobian

from fixtures.make_model_reference import build, outputs
from flowforge.models import available, create
from tiny_models import TINY_MODELS, is_image, tiny_batch

STOCHASTIC = ("importance-sampled",)  # a new u (LGF) is drawn in every pass: no single map to check


def _invertible(model) -> bool:
    return model.log_prob_kind not in STOCHASTIC and not model.__class__.__name__.startswith("VAE")


def test_every_registered_model_has_a_tiny_setting():
    assert sorted(TINY_MODELS) == available()


@pytest.mark.parametrize("name", available())
def test_samples_are_finite_and_shaped(name):
    model = build(name)
    with torch.no_grad():
        samples = model.sample(3, temperature=0.7, generator=torch.Generator().manual_seed(0))
    kw = TINY_MODELS[name]
    assert samples.shape == (3, *(kw["image_shape"] if is_image(name) else (kw["dim"],)))
    assert torch.isfinite(samples).all()


@pytest.mark.parametrize("name", available())
def test_state_dict_round_trip_and_seeded_evaluation_repeat(name):
    model = build(name)
    copy = create(name, **TINY_MODELS[name])
    copy.load_state_dict(model.state_dict())
    first, again, loaded = outputs(name, model), outputs(name, model), outputs(name, copy.eval())
    for key in first:
        assert torch.equal(first[key], again[key]), f"{name}: {key} differs between two seeded evaluations"
        assert torch.equal(first[key], loaded[key]), f"{name}: {key} differs after a state-dict round trip"


@pytest.mark.parametrize("name", [n for n in available() if is_image(n)])
def test_invertible_image_models_decode_their_encoding(name):
    model = build(name)
    if not _invertible(model):
        pytest.skip(f"{name} is a latent-variable model (an index u drawn per pass, or a VAE): decode(encode(x)) != x")
    images = tiny_batch(name, n=4, seed=9)[0]
    with torch.no_grad():
        x = model.prepare(images, torch.Generator().manual_seed(1))
        back = model.decode(model.encode(x))
    tolerance = 1e-3 if model.log_prob_kind == "roulette-estimate" else 1e-4  # residual blocks: fixed-point inverse
    torch.testing.assert_close(back, x, rtol=0, atol=tolerance)


@pytest.mark.parametrize("name", [n for n in available() if not is_image(n)])
def test_exact_flat_models_log_prob_is_the_change_of_variables(name):
    model = build(name)
    if not _invertible(model) or model.log_prob_kind != "exact":
        pytest.skip(f"{name}: log_prob is a {model.log_prob_kind} quantity, not one change of variables")
    model = model.double()
    x = tiny_batch(name, n=2, seed=4)[0].double()
    with torch.no_grad():
        log_prob = model.log_prob(x)
    for i in range(2):
        jac = jacobian(lambda v: model.encode(v[None])[0][0], x[i])
        z = model.encode(x[i : i + 1])[0]
        expected = model.base.log_prob(z)[0] + torch.linalg.slogdet(jac)[1]
        assert abs(float((log_prob[i] - expected).detach())) < 1e-8
