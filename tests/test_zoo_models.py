"""MAF, flat RealNVP and image RealNVP as whole models: exact log-density against the float64
Jacobian (eval mode, where batch norm is a fixed affine map), exact round trips, sampling,
gradients, and bits/dim of the image model through the shared constant."""

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from flowforge.distributions.gaussian import diag_gaussian_log_prob
from flowforge.models import create
from flowforge.objectives.bits_per_dim import bits_per_dim


def _trained_a_little(model, batch):
    """A few training-mode passes so batch-norm running averages are not the identity; then
    perturb every parameter so no layer is trivially the identity."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model.loss(batch)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


FLAT = [("maf", {"layers": 3, "hidden": [16, 16]}), ("maf", {"layers": 2, "hidden": [8], "batch_norm": False}),
        ("flat-realnvp", {"layers": 3, "hidden": [16]})]


@pytest.mark.parametrize("name,kw", FLAT, ids=lambda v: str(v))
def test_flat_model_log_prob_is_exact(name, kw):
    model = _trained_a_little(create(name, dim=3, **kw), (torch.randn(64, 3) * 2 + 1,)).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    lp = model.log_prob(x)
    for i in range(2):
        jac = jacobian(lambda v: model.encode(v.unsqueeze(0))[0][0], x[i])
        z = model.encode(x[i : i + 1])[0]
        expected = diag_gaussian_log_prob(z)[0] + torch.linalg.slogdet(jac)[1]
        assert abs(float((lp[i] - expected).detach())) < 1e-8


@pytest.mark.parametrize("name,kw", FLAT, ids=lambda v: str(v))
def test_flat_model_round_trip_sample_and_gradients(name, kw):
    model = create(name, dim=4, **kw)
    x = torch.randn(32, 4)
    out = model.loss((x,))
    out["loss"].backward()
    assert set(out) == {"loss", "nll"} and math.isfinite(float(out["loss"].detach()))
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model = _trained_a_little(model, (x,))
    with torch.no_grad():
        assert torch.allclose(model.decode(model.encode(x)), x, atol=1e-5)
        s = model.sample(10, generator=torch.Generator().manual_seed(0))
        s2 = model.sample(10, generator=torch.Generator().manual_seed(0))
    assert s.shape == (10, 4) and torch.equal(s, s2)


def test_flat_models_reject_wrong_dimension():
    from flowforge.errors import ShapeError

    with pytest.raises(ShapeError, match=r"\(B, 3\).*\(5, 4\)"):
        create("maf", dim=3).log_prob(torch.zeros(5, 4))


def _tiny_realnvp():
    return create("realnvp", image_shape=(1, 4, 4), blocks=1, hidden=4, logit_alpha=0.05)


def test_realnvp_log_prob_is_exact_and_bits_use_the_shared_constant():
    images = torch.randint(0, 256, (32, 1, 4, 4), dtype=torch.uint8)
    model = _trained_a_little(_tiny_realnvp(), (images,)).double()
    x = model.prepare(images[:2]).double()
    lp = model.log_prob(x)
    for i in range(2):
        def flat_latents(v):
            return torch.cat([z.flatten() for z in model.encode(v.view(1, 1, 4, 4))])

        jac = jacobian(flat_latents, x[i].flatten())
        prior = sum(diag_gaussian_log_prob(z) for z in model.encode(x[i : i + 1]))[0]
        assert abs(float((lp[i] - (prior + torch.linalg.slogdet(jac)[1])).detach())) < 1e-8
    gen = torch.Generator().manual_seed(3)
    bpd = model.bits_per_dim(images[:2], generator=gen)
    expected = bits_per_dim(model.log_prob(model.prepare(images[:2], torch.Generator().manual_seed(3)).double()), 16, 8)
    torch.testing.assert_close(bpd, expected)


def test_realnvp_round_trip_sampling_and_training_step():
    images = torch.randint(0, 256, (16, 1, 4, 4), dtype=torch.uint8)
    model = _tiny_realnvp()
    out = model.loss((images,))
    out["loss"].backward()
    assert math.isfinite(float(out["bpd"]))
    assert all(p.grad is not None for p in model.parameters())
    model = _trained_a_little(model, (images,))
    with torch.no_grad():
        x = model.prepare(images)
        latents = model.encode(x)
        assert [tuple(z.shape[1:]) for z in latents] == [(2, 2, 2), (2, 2, 2)]
        assert torch.allclose(model.decode(latents), x, atol=1e-5)
        s = model.sample(5, temperature=0.5)
    assert s.shape == (5, 1, 4, 4) and bool(((s > -0.5) & (s < 0.5)).all())


def test_realnvp_needs_even_image_sides():
    with pytest.raises(ValueError, match="even"):
        create("realnvp", image_shape=(1, 5, 4))
