"""VAE with a flow decoder (Morrow & Chiu 2020) and the two-stage VAE prior: bounds, phases,
the Glow layer's identity start, sampling paths and phase-2 loading from a phase-1 run."""

from __future__ import annotations

import math

import pytest
import torch

from flowforge.distributions.gaussian import diag_gaussian_log_prob
from flowforge.errors import ConfigError
from flowforge.models import create
from flowforge.models.latent_priors import FlowLatentPrior, SecondStageVAE, gaussian_kl
from flowforge.models.vae_flow import VAEFlow

SHAPE = (2, 8, 8)
SMALL = dict(image_shape=SHAPE, n_bits=8, latent_dim=3, channels=4, depth=1, prior_layers=2, prior_hidden=(16, 16),
             second_stage_width=16, second_stage_depth=2, glow_depth=2, glow_hidden=8)


def _images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _model(**kw) -> VAEFlow:
    torch.manual_seed(0)
    return create("vae-flow", **{**SMALL, **kw})


def _perturb(module: torch.nn.Module, scale: float = 0.05) -> None:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


def test_gaussian_kl_matches_torch():
    mean, log_std = torch.randn(5, 3, dtype=torch.float64), 0.3 * torch.randn(5, 3, dtype=torch.float64)
    q = torch.distributions.Normal(mean, log_std.exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    torch.testing.assert_close(gaussian_kl(mean, log_std), torch.distributions.kl_divergence(q, p).sum(1))


@pytest.mark.parametrize("prior", ["flow", "gaussian"])
def test_elbo_and_importance_sampling_bound_the_exact_likelihood(prior):
    """With a 2-D latent, log p(x) = log of the integral of p(x|z) p(z) dz by quadrature. Jensen:
    E[ELBO] <= log p(x); the importance-sampled estimate (K = 1000) closes most of the gap."""
    model = _model(prior=prior, phase="joint", latent_dim=2).double()
    model.initialize(_images())
    _perturb(model.glow)
    with torch.no_grad():
        model.encoder.head.bias.add_(0.7)  # a poor posterior: the bound has a visible gap
        model.prior.requires_grad_(False)
    x = model.prepare(_images(2, seed=1)).double()
    g = torch.linspace(-7, 7, 141, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        x_bar, logdet = model.glow(x)
        mean_x, log_std_x = model._decode_gaussian(grid)
        exact = []
        for i in range(len(x)):
            log_joint = diag_gaussian_log_prob(x_bar[i:i + 1].expand_as(mean_x), mean_x, log_std_x) + model.prior.log_prob(grid)
            exact.append(torch.logsumexp(log_joint, 0) + 2 * math.log(float(g[1] - g[0])) + logdet[i])
        exact = torch.stack(exact)
        gen = torch.Generator().manual_seed(0)
        elbos = torch.stack([model.elbo(x, gen) for _ in range(200)])
        iwae = model.log_prob_is(x, samples=1000, generator=gen)
    elbo, elbo_se = elbos.mean(0), elbos.std(0) / math.sqrt(len(elbos))
    gap = exact - elbo
    assert (gap > 4 * elbo_se).all(), (exact, elbo, elbo_se)
    assert ((exact - iwae).abs() < 0.2 * gap).all(), (exact, iwae, elbo)


def test_glow_layer_starts_at_the_identity_so_phase_two_starts_at_the_phase_one_bound():
    vae = _model(phase="vae")
    vae.initialize(_images())
    full = _model(phase="joint")
    full.load_state_dict({**full.state_dict(), **vae.state_dict()})
    full.initialize(_images())
    x = vae.prepare(_images(4))
    torch.testing.assert_close(full.glow(x)[0], x, rtol=0, atol=1e-6)
    a = vae.elbo_terms(x, torch.Generator().manual_seed(3))
    b = full.elbo_terms(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a["elbo"], b["elbo"], rtol=1e-5, atol=1e-3)


def test_data_init_of_the_glow_layer_normalises_its_first_actnorm():
    model = _model(phase="joint", glow_init="data")
    assert model.initialize(_images(64), generator=torch.Generator().manual_seed(7)) > 0
    first = model.glow.layers[0].layers[0]  # two channels: no squeeze, the first step's actnorm
    y = first(model.prepare(_images(64), torch.Generator().manual_seed(7)))[0]
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3)), torch.ones(2), atol=1e-2, rtol=0)


def test_glow_phase_trains_only_the_glow_layer():
    model = _model(phase="glow")
    model.glow.requires_grad_(True)
    model.init_from = ""
    model.phase = "joint"
    model.initialize(_images())
    model.phase = "glow"
    out = model.loss((_images(),))
    out["loss"].backward()
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert trained == {"glow"}
    assert all(not p.requires_grad for n, p in model.named_parameters() if not n.startswith("glow"))


def test_prior_phase_trains_only_the_prior():
    model = _model(prior="two-stage", phase="prior")
    out = model.loss((_images(),))
    out["loss"].backward()
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {"prior"}


def test_frozen_phase_without_init_from_is_refused():
    with pytest.raises(ConfigError, match="init_from"):
        _model(phase="glow").initialize_from_runs(lambda run_dir: None)


def test_single_channel_images_are_squeezed_for_the_glow_layer():
    model = create("vae-flow", **{**SMALL, "image_shape": (1, 8, 8), "phase": "joint"})
    model.initialize(torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8))
    assert model.glow.layers[1].layers[0].num_channels == 4
    with pytest.raises(ConfigError, match="2 channels"):
        create("vae-flow", **{**SMALL, "image_shape": (1, 8, 8), "phase": "joint", "glow_squeeze": "never"})


def test_sampling_paths():
    model = _model(phase="joint")
    model.initialize(_images())
    _perturb(model.glow)
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    z = model.sample_latents(6, generator=gen())
    mean = model.decode_latents(z, use_glow=False)
    assert mean.shape == (6, *SHAPE) and mean.min() >= -0.5 and mean.max() <= 0.5
    # temperature 0: x = f^-1(g_mu(z)), so f(x) recovers the decoder mean
    x0 = model.decode_latents(z, temperature=0.0)
    torch.testing.assert_close(model.glow(x0)[0], mean, atol=1e-5, rtol=0)
    # the Glow temperature scales the decoder noise: f(x_T) - g_mu = T * sigma * eps with shared eps
    x_half, x_one = model.decode_latents(z, 0.5, gen()), model.decode_latents(z, 1.0, gen())
    torch.testing.assert_close(model.glow(x_one)[0] - mean, 2 * (model.glow(x_half)[0] - mean), atol=1e-4, rtol=0)
    assert model.sample(3, generator=gen()).shape == (3, *SHAPE)
    assert model.decode(model.encode(mean)).shape == mean.shape


def test_flow_prior_density_integrates_to_one_in_one_dimension_pair():
    """An exact density: a 2-D flow prior integrates to 1 on a grid (the MC ELBO relies on it)."""
    torch.manual_seed(0)
    prior = FlowLatentPrior(2, layers=3, hidden=(8,)).double()
    _perturb(prior, 0.3)
    g = torch.linspace(-9, 9, 601, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    with torch.no_grad():
        density = prior.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp()
    step = float(g[1] - g[0])
    assert abs(float(density.sum()) * step * step - 1) < 1e-3


def test_second_stage_vae_log_prob_is_a_bound():
    torch.manual_seed(0)
    prior = SecondStageVAE(2, width=8, depth=2).double()
    _perturb(prior, 0.3)
    g = torch.linspace(-8, 8, 161, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        total = prior.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1), gen).exp().sum() * float(g[1] - g[0]) ** 2
    assert float(total) < 1.0  # exp(ELBO) <= p(z) pointwise in expectation, so it integrates below 1


def test_phase_two_loads_phase_one_from_a_run(tmp_path):
    from flowforge.runs.checkpoint import save_checkpoint
    from flowforge.runs.config import config_from_dict, dump_toml

    vae = _model(phase="vae")
    _perturb(vae)
    run = tmp_path / "p1"
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in SMALL.items() if k not in ("image_shape", "n_bits")}
    cfg = config_from_dict({"model": {"name": "vae-flow", **options}})
    run.mkdir()
    (run / "config.toml").write_text(dump_toml(cfg))
    state = {"config": cfg.to_dict(), "model_data_args": {"image_shape": list(SHAPE), "n_bits": 8}, "step": 1}
    save_checkpoint(run / "checkpoints" / "last", model=vae, ema=vae, state=state)
    from flowforge.runs.run_dir import load_trained

    def load_run(run_dir):
        return load_trained(run_dir, which="best")[1]

    glow_phase = _model(phase="glow", init_from=str(run))
    glow_phase.initialize_from_runs(load_run)
    glow_phase.initialize(_images())
    for name in ("encoder", "decoder", "prior"):
        for (k, a), b in zip(getattr(vae, name).state_dict().items(), getattr(glow_phase, name).state_dict().values()):
            torch.testing.assert_close(a, b, msg=k)
    mismatched = _model(phase="glow", init_from=str(run), latent_dim=5)
    with pytest.raises(ConfigError, match="architecture"):
        mismatched.initialize_from_runs(load_run)


def test_loss_reports_the_bound_in_bits_per_dim():
    model = _model()
    out = model.loss((_images(),))
    nats = out["recon_nats"] + out["kl_nats"]
    d = math.prod(SHAPE)
    torch.testing.assert_close(out["bpd"], (nats + d * 8 * math.log(2)) / (d * math.log(2)), rtol=1e-4, atol=1e-4)


def test_bound_evaluation_is_reproducible_and_leaves_the_global_generator_alone():
    from flowforge.data.images import ImageSplit
    from flowforge.evaluation.bits_per_dim import per_example_bpd

    model = _model()
    _perturb(model)  # a non-trivial encoder: the one-sample ELBO depends on the z draw
    split = ImageSplit(_images(8), torch.zeros(8, dtype=torch.long))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = per_example_bpd(model, split, batch_size=4, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # another global state: the figure must not depend on it
    assert torch.equal(per_example_bpd(model, split, batch_size=4, seed=5), first)
    assert not torch.equal(per_example_bpd(model, split, batch_size=4, seed=6), first)  # z really is drawn
