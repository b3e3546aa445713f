"""Tests of the Glow model, its priors, bits/dim, n-bit quantisation and the model registry.

A tiny Glow (1 x 8 x 8 images, 2 levels of 2 steps, 8 hidden channels) is initialised on random
uint8 images and then every parameter is perturbed with seeded noise, so zero-initialised
layers and priors are not trivially the identity / N(0, I).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.autograd.functional import jacobian
from torch.distributions import Normal

from flowforge.bijections import ActNorm, is_initialized
from flowforge.data.quantisation import dequantise, to_model_space, to_uint8
from flowforge.errors import ShapeError
from flowforge.models import FlowModel, Glow, available, create, register
from flowforge.models.glow import COUPLINGS, PERMUTATIONS
from flowforge.objectives.bits_per_dim import bits_per_dim, discretisation_nats

TINY = dict(image_shape=(1, 8, 8), levels=2, depth=2, hidden=8)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@torch.no_grad()
def perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.1, gain_scale: float = 0.01) -> None:
    """Seeded noise on every parameter; ZeroConv / LinearZeros gains exp(3 * logs) get less."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        s = gain_scale if name.endswith("logs") else scale
        p.add_(s * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def images(n: int, seed: int = 0, shape=(1, 8, 8)) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)


def labels(n: int, seed: int = 0, num_classes: int = 10) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_classes, (n,), generator=gen)


def tiny_glow(seed: int = 0, init: bool = True, **kw) -> Glow:
    torch.manual_seed(seed)
    model = create("glow", **{**TINY, **kw})
    if init:
        # Perturb first, then initialise: actnorm then normalises the perturbed network, so the
        # model stays well conditioned (noise added after init is amplified by the actnorm scales
        # of the coupling nets, whose conv weights start at std 0.05, and inverses overflow).
        perturb(model, seed)
        batch = images(32, seed=10 + seed)
        ctx = labels(32, seed=10 + seed) if model.num_classes else None
        assert model.initialize(batch, ctx) > 0
    return model


def model_space(n: int, seed: int = 1) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return dequantise(to_model_space(images(n, seed)), 8, gen)


# --------------------------------------------------------------------------- encode / decode


def test_encode_shapes_and_decode_inverts():
    model = tiny_glow()
    x = model_space(4)
    for grad in (True, False):  # the no-grad eval path uses the cached 1x1 inverses
        model.train(grad)
        with torch.set_grad_enabled(grad):
            latents = model.encode(x)
            assert [tuple(z.shape) for z in latents] == [(4, 2, 4, 4), (4, 8, 2, 2)]
            x_back = model.decode(latents)
        assert x_back.shape == x.shape
        assert (x_back - x).abs().max().item() < 1e-5
    assert sum(z[0].numel() for z in latents) == model.num_dims
    with pytest.raises(ValueError, match="2 latents"):
        model.decode(latents[:1])


def test_log_prob_is_change_of_variables_float64():
    """log p(x) = log|det d encode(x)/dx| + the split and top prior log-densities, with the
    Jacobian taken by autograd and the Gaussians evaluated by torch.distributions."""
    model = tiny_glow().double()
    x = model_space(2).double()
    with torch.no_grad():
        log_prob = model.log_prob(x)
    assert log_prob.shape == (2,) and log_prob.dtype == torch.float64
    for i in range(2):
        xi = x[i : i + 1]

        def flat_encode(v: Tensor) -> Tensor:
            return torch.cat([z.flatten() for z in model.encode(v.view_as(xi))])

        jac = jacobian(flat_encode, xi.flatten())
        assert jac.shape == (64, 64)
        _, logabsdet = torch.linalg.slogdet(jac)
        with torch.no_grad():
            # the split latent is eps, standardised by its split prior (inside the Jacobian)
            split, top = model.encode(xi)
            log_split = Normal(0.0, 1.0).log_prob(split).sum()
            top_mean, top_logs = model.top_prior.params(1, None)
            log_top = Normal(top_mean, top_logs.exp()).log_prob(top).sum()
        expected = logabsdet + log_split + log_top
        assert abs(log_prob[i].item() - expected.item()) < 1e-8, (log_prob[i].item(), expected.item())


def test_log_prob_batch_independent_and_consistent_with_bits_per_dim():
    model = tiny_glow()
    x = model_space(4)
    with torch.no_grad():
        lp = model.log_prob(x)
        for i in range(4):
            torch.testing.assert_close(model.log_prob(x[i : i + 1])[0], lp[i], rtol=1e-6, atol=1e-4)
        raw = images(4, seed=3)
        bpd = model.bits_per_dim(raw, generator=torch.Generator().manual_seed(5))
        lp_raw = model.log_prob(model.prepare(raw, torch.Generator().manual_seed(5)))
        torch.testing.assert_close(bpd, bits_per_dim(lp_raw, 64, 8), rtol=0, atol=0)
        loss = model.loss(raw, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(loss["bpd"], bpd.mean(), rtol=0, atol=1e-6)
        torch.testing.assert_close(loss["loss"], loss["bpd"], rtol=0, atol=0)
    assert set(loss) == {"loss", "bpd"}


# --------------------------------------------------------------------------- bits/dim, quantisation


@pytest.mark.parametrize("n_bits", [8, 5])
def test_uniform_density_costs_n_bits_per_dim(n_bits):
    d = 64
    # the uniform density on [-0.5, 0.5)^D has log p = 0: the uniform model over n-bit values
    uniform = bits_per_dim(torch.zeros(3, dtype=torch.float64), d, n_bits)
    torch.testing.assert_close(uniform, torch.full((3,), float(n_bits), dtype=torch.float64), rtol=0, atol=1e-12)
    # all mass on one cell of volume 2^(-nD): log p = nD log 2, zero bits
    point = bits_per_dim(torch.full((1,), d * n_bits * math.log(2), dtype=torch.float64), d, n_bits)
    assert abs(point.item()) < 1e-12
    assert math.isclose(discretisation_nats(d, n_bits), d * n_bits * math.log(2), rel_tol=1e-15)
    assert discretisation_nats(784, 8) == pytest.approx(784 * 8 * 0.6931471805599453, rel=1e-15)


@pytest.mark.parametrize("n_bits", [8, 5])
def test_quantisation(n_bits):
    bins = 2**n_bits
    ends = to_model_space(torch.tensor([0, 255], dtype=torch.uint8), n_bits)
    assert ends.tolist() == [-0.5, (bins - 1) / bins - 0.5]

    x = torch.arange(256, dtype=torch.uint8)
    step = 2 ** (8 - n_bits)
    expected = (x // step) * step
    assert torch.equal(to_uint8(to_model_space(x, n_bits), n_bits), expected)
    if n_bits == 8:
        assert torch.equal(expected, x)

    many = x.repeat(16)
    k = (many // step).double()
    deq = dequantise(to_model_space(many, n_bits), n_bits, torch.Generator().manual_seed(n_bits))
    lower, upper = k / bins - 0.5, (k + 1) / bins - 0.5
    assert (deq.double() >= lower).all()
    assert (deq.double() < upper).all()
    assert deq.min() >= -0.5 and deq.max() < 0.5

    with pytest.raises(TypeError):
        to_model_space(x.float(), n_bits)


# --------------------------------------------------------------------------- sampling


def test_zero_temperature_samples_are_the_prior_means():
    model = tiny_glow()
    n = 3
    with torch.no_grad():
        a = model.sample(n, temperature=0.0)
        b = model.sample(n, temperature=0.0, generator=torch.Generator().manual_seed(1))
        c = model.sample(n, temperature=[0.0, 0.0], generator=torch.Generator().manual_seed(2))
        assert a.shape == (n, 1, 8, 8)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)

        top_mean, _ = model.top_prior.params(n, None)
        # eps = 0 at the split is the split prior's mean given the kept half
        expected = model.decode([torch.zeros(n, 2, 4, 4), top_mean])
        kept = model.transform.levels[1].inverse(top_mean)[0]
        split_mean, _ = model.transform.splits[0].prior.params(kept)
    torch.testing.assert_close(a, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(split_mean, torch.zeros_like(split_mean))  # the prior is not trivial


def test_temperature_list_length_is_checked():
    model = tiny_glow(init=False)
    for bad in ([1.0], [1.0, 1.0, 1.0]):
        with pytest.raises(ValueError, match="one per level"):
            model.sample(2, temperature=bad)


def test_seeded_samples_are_reproducible():
    model = tiny_glow()
    with torch.no_grad():
        a = model.sample(2, temperature=1.0, generator=torch.Generator().manual_seed(7))
        b = model.sample(2, temperature=1.0, generator=torch.Generator().manual_seed(7))
        c = model.sample(2, temperature=1.0, generator=torch.Generator().manual_seed(8))
        d = model.sample(2, temperature=[0.5, 1.0], generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, d)
    assert torch.isfinite(a).all()


# --------------------------------------------------------------------------- initialisation


def test_initialize_runs_once_and_survives_save_load():
    model = tiny_glow(init=False)
    n_actnorms = sum(isinstance(m, ActNorm) for m in model.modules())
    assert n_actnorms == 2 * 2 * 3  # levels x depth x (step actnorm + 2 in the coupling net)
    perturb(model)
    assert not is_initialized(model)
    assert model.initialize(images(32, seed=10)) == n_actnorms
    assert is_initialized(model)
    assert model.initialize(images(32, seed=11)) == 0

    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(99)
    fresh = create("glow", **TINY, seed=5)
    assert not is_initialized(fresh)
    fresh.load_state_dict(state)
    assert is_initialized(fresh)
    assert fresh.initialize(images(32, seed=12)) == 0
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state[k]), k
    x = model_space(4, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(fresh.log_prob(x), model.log_prob(x), rtol=0, atol=0)
        g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
        torch.testing.assert_close(fresh.sample(2, 0.7, generator=g()), model.sample(2, 0.7, generator=g()))


# --------------------------------------------------------------------------- class-conditional


def test_class_conditional_glow():
    model = tiny_glow(num_classes=10)
    batch = (images(8, seed=2), labels(8, seed=2))
    out = model.loss(batch)
    assert set(out) == {"loss", "bits_y", "bpd", "accuracy"}
    assert all(torch.isfinite(v) for v in out.values())
    assert 0.0 <= out["accuracy"].item() <= 1.0
    torch.testing.assert_close(out["loss"], out["bpd"] + model.y_weight * out["bits_y"])

    with pytest.raises(ShapeError, match=r"\(2,\)"):
        model.sample(2, temperature=0.0, context=torch.tensor([1, 2, 3]))

    perturb(model.top_prior.label_map, seed=3, scale=0.5, gain_scale=0.1)
    with torch.no_grad():
        s = model.sample(3, temperature=0.0, context=torch.tensor([3, 3, 7]))
    torch.testing.assert_close(s[0], s[1], rtol=0, atol=0)
    assert (s[0] - s[2]).abs().max() > 1e-3


def test_class_conditional_glow_without_labels_is_the_mixture_over_classes():
    model = tiny_glow(num_classes=10).double()
    perturb(model.top_prior.label_map, seed=3, scale=0.5, gain_scale=0.1)
    x = model_space(3).double()
    with torch.no_grad():
        each = torch.stack([model.log_prob(x, torch.full((3,), k)) for k in range(10)], dim=1)
        torch.testing.assert_close(model.log_prob_per_class(x), each)  # one flow pass, every label
        torch.testing.assert_close(model.log_prob(x), torch.logsumexp(each, 1) - math.log(10))
        drawn = model.sample(4, temperature=0.0, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(10, (4,), generator=torch.Generator().manual_seed(0))  # the draw sample made
    torch.testing.assert_close(drawn, model.sample(4, temperature=0.0, context=labels))


def test_bits_per_dim_of_a_class_conditional_glow_are_the_marginal_with_the_conditional_beside():
    from flowforge.data.images import ImageSplit
    from flowforge.evaluation.bits_per_dim import evaluate_bpd, per_example_bpd

    model = tiny_glow(num_classes=10)
    perturb(model.top_prior.label_map, seed=3, scale=0.5, gain_scale=0.1)
    split = ImageSplit(images(12, seed=4), labels(12, seed=4))
    both = per_example_bpd(model, split, batch_size=5, samples=2)
    assert both.shape == (12, 2)
    bound = math.log2(10) / model.num_dims  # p(x) >= p(x | y) / 10 for every example
    assert (both[:, 1] <= both[:, 0] + bound + 1e-9).all() and (both[:, 1] != both[:, 0]).any()
    result = evaluate_bpd(model, split, batch_size=5, samples=2)
    assert result["bpd"] == pytest.approx(float(both[:, 1].mean()))
    assert result["bpd_given_label"] == pytest.approx(float(both[:, 0].mean()))


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("permutation", PERMUTATIONS)
@pytest.mark.parametrize("coupling", COUPLINGS)
def test_loss_is_finite_and_reaches_every_parameter(coupling, permutation):
    model = tiny_glow(coupling=coupling, permutation=permutation)
    out = model.loss(images(4, seed=6), generator=torch.Generator().manual_seed(6))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"no gradient reached {name}"
            assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
    assert sum(p.grad.abs().sum() for p in model.parameters() if p.grad is not None) > 0


def test_conditional_loss_reaches_every_parameter():
    model = tiny_glow(num_classes=10)
    model.loss((images(4, seed=6), labels(4, seed=6)))["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.classifier.linear.weight.grad.abs().sum() > 0
    assert model.top_prior.label_map.linear.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- bad input, registry


def test_wrong_image_shape_raises_shape_error():
    model = tiny_glow(init=False)
    for bad in (torch.zeros(2, 1, 8, 4), torch.zeros(2, 3, 8, 8), torch.zeros(1, 8, 8)):
        with pytest.raises(ShapeError) as info:
            model.log_prob(bad)
        assert "(B, 1, 8, 8)" in str(info.value)
        assert str(tuple(bad.shape)) in str(info.value)


def test_bad_construction_raises_value_error():
    with pytest.raises(ValueError, match="divisible by 8"):
        create("glow", image_shape=(1, 12, 12), levels=3, depth=1, hidden=4)
    with pytest.raises(ValueError, match="permutation"):
        create("glow", **{**TINY, "permutation": "nope"})
    with pytest.raises(ValueError, match="coupling"):
        create("glow", **{**TINY, "coupling": "nope"})
    with pytest.raises(ValueError, match="scale function"):
        create("glow", **{**TINY, "scale": "nope"})


def test_registry():
    assert "glow" in available()
    assert isinstance(create("glow", **TINY), Glow)
    with pytest.raises(ValueError) as info:
        create("nope")
    assert "nope" in str(info.value) and "glow" in str(info.value)

    class Duplicate(FlowModel):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register("glow")(Duplicate)
    assert create("glow", **TINY).__class__ is Glow  # the original registration is intact
