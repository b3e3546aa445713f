"""Localised generative flows (models/lgf.py, objectives/elbo.py, objectives/importance.py,
evaluation/importance.py): the ELBO and the importance-sampling estimate against exact
likelihoods, the estimator's properties, ancestral sampling, and the models end to end."""

import math

import pytest
import torch
from torch import nn

from flowforge.bijections import Chain
from flowforge.bijections.conditional import FixedIndex, IndexedAffine
from flowforge.distributions.conditional_gaussian import ConditionalDiagGaussian
from flowforge.distributions.gaussian import diag_gaussian_log_prob
from flowforge.evaluation.importance import evaluate_importance
from flowforge.models import create
from flowforge.models.lgf import LGFMAF
from flowforge.objectives.elbo import LocalisedStep, localised_steps
from flowforge.objectives.importance import elbo_samples, importance_log_likelihood


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def _perturb(module: nn.Module, seed: int, scale: float = 0.3) -> None:
    g = _gen(seed)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


@torch.no_grad()
def _make_constant(net: nn.Module, values: torch.Tensor) -> None:
    """An MLP whose output is `values` whatever its input (zero output weights, bias = values)."""
    net.output.weight.zero_()
    net.output.bias.copy_(values)


# ------------------------------------------------------------------ constant s, t and p = q


@pytest.mark.parametrize("name", ["lgf-maf", "lgf-flat-realnvp"])
def test_constant_index_and_equal_p_q_give_the_base_flows_exact_likelihood(name):
    """With s, t constant and p(u|z) = q(u|x) = the same fixed Gaussian, every log p - log q term is
    0 and G does not depend on u: ELBO = IS estimate = the exact log-likelihood of the base flow
    with G(.; u0) in place of each step, for every draw of u."""
    torch.manual_seed(0)
    model = create(name, dim=3, layers=3, hidden=[16, 16], u_dim=2).double()
    _perturb(model, seed=1)  # base layers and every net non-trivial
    g = _gen(2)
    for step in localised_steps(model):
        _make_constant(step.bijection.net, 0.5 * torch.randn(6, generator=g, dtype=torch.float64))
        shared = 0.5 * torch.randn(4, generator=g, dtype=torch.float64)  # (mean, log-std) of u
        _make_constant(step.prior.net, shared)
        _make_constant(step.posterior.net, shared)
    base = Chain([FixedIndex(layer.bijection, torch.zeros(2, dtype=torch.float64))
                  if isinstance(layer, LocalisedStep) else layer for layer in model.transform.layers])
    x = torch.randn(64, 3, generator=_gen(3), dtype=torch.float64)
    with torch.no_grad():
        z, logdet = base(x)
        exact = diag_gaussian_log_prob(z) + logdet
        elbo = model.elbo(x, _gen(4))
        estimate = model.log_prob(x, samples=7, generator=_gen(5))
    assert exact.std() > 0.1  # a non-trivial density
    torch.testing.assert_close(elbo, exact, rtol=0, atol=1e-10)
    torch.testing.assert_close(estimate, exact, rtol=0, atol=1e-10)


def test_fresh_model_is_the_base_flow_at_initialisation():
    """Zero-initialised s/t and p/q outputs: the untrained LGF-MAF's ELBO is exactly the MAF (no
    batch norm) with the same MADE weights."""
    torch.manual_seed(0)
    lgf = create("lgf-maf", dim=4, layers=3, hidden=[16, 16])
    maf = create("maf", dim=4, layers=3, hidden=[16, 16], batch_norm=False)
    made = [m for m in lgf.modules() if type(m).__name__ == "MAFStep"]
    for src, dst in zip(made, [m for m in maf.modules() if type(m).__name__ == "MAFStep"]):
        _perturb(src, seed=7)
        dst.load_state_dict(src.state_dict())
    x = torch.randn(32, 4, generator=_gen(1))
    with torch.no_grad():
        torch.testing.assert_close(lgf.elbo(x, _gen(2)), maf.log_prob(x), rtol=0, atol=1e-5)


# ------------------------------------------------------------------ the IS estimator


def _random_lgf(seed: int = 0) -> LGFMAF:
    torch.manual_seed(seed)
    model = create("lgf-maf", dim=2, layers=2, hidden=[16, 16], pq_hidden=[16, 16]).double()
    _perturb(model, seed=seed + 1, scale=0.5)
    return model.eval()


def check_is_at_least_the_mean_elbo(model, x: torch.Tensor, samples: int, max_rows: int) -> None:
    """For every example, the IS estimate of K one-sample ELBOs (drawn in several passes of one
    generator) is >= their mean (Jensen), and u matters (the ELBOs vary)."""
    g = _gen(1)
    with torch.no_grad():
        elbos = elbo_samples(lambda r: model.elbo(r, g), x, samples=samples, max_rows=max_rows)
    assert elbos.shape == (samples, len(x))
    assert (elbos.std(0) > 1e-3).all()  # u matters: a real gap
    assert (importance_log_likelihood(elbos) >= elbos.mean(0) - 1e-12).all()


def check_is_grows_with_k(model, x: torch.Tensor, ks=(1, 4, 16, 64, 256), repeats: int = 3,
                          min_rise: float = 0.05) -> None:
    """The IS estimate, averaged over examples and `repeats` independent draws, increases with K,
    and the K = 1 figure (the mean ELBO) is at least `min_rise` nats looser than the largest K's."""
    means = []
    with torch.no_grad():
        for k in ks:
            per_repeat = [model.log_prob(x, samples=k, generator=_gen(10 * k + r)).mean() for r in range(repeats)]
            means.append(float(torch.stack(per_repeat).mean()))
    assert all(b > a for a, b in zip(means, means[1:])), means
    assert means[-1] - means[0] > min_rise, means


def test_is_estimate_is_at_least_the_mean_elbo_of_its_draws():
    x = torch.randn(100, 2, generator=_gen(0), dtype=torch.float64)
    check_is_at_least_the_mean_elbo(_random_lgf(), x, samples=50, max_rows=700)


def test_chunked_passes_equal_one_pass():
    """Rows of each chunk are whole copies of the batch, so chunking only changes the draws' order
    of the generator; with a deterministic elbo function the (K, B) tensor is the same."""
    x = torch.randn(7, 3, generator=_gen(0), dtype=torch.float64)
    fn = lambda r: (r ** 2).sum(1) + torch.arange(len(r), dtype=r.dtype) // 7  # copy index k added
    one = elbo_samples(fn, x, samples=10, max_rows=1000)
    chunked = elbo_samples(fn, x, samples=10, max_rows=21)  # 3 copies per pass, last pass 1
    assert one.shape == chunked.shape == (10, 7)
    torch.testing.assert_close(one[:3], chunked[:3])
    assert torch.equal(one[:, 0] - one[0, 0], torch.arange(10, dtype=torch.float64))


def test_is_estimate_grows_with_k_on_average():
    x = torch.randn(200, 2, generator=_gen(4), dtype=torch.float64)
    check_is_grows_with_k(_random_lgf(seed=3), x)


# ------------------------------------------------------------------ a 1-D closed form


def _linear(out_from: float, out_bias: tuple[float, float]) -> nn.Linear:
    """1 -> 2 linear map: first output `out_from` * input + bias[0], second output bias[1]."""
    lin = nn.Linear(1, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[out_from], [0.0]], dtype=torch.float64))
        lin.bias.copy_(torch.tensor(out_bias, dtype=torch.float64))
    return lin


def _one_dim_model(a: float, q_mean_slope: float, q_log_std: float) -> LGFMAF:
    """z ~ N(0, 1), u ~ p(u | z) = N(0, 1), x = G^{-1}(z; u) = z - a u (s = 0, t = a u), the MADE the
    identity: so x ~ N(0, 1 + a^2). q(u | x) = N(q_mean_slope * x, exp(q_log_std)^2)."""
    model = create("lgf-maf", dim=1, layers=1, hidden=[4]).double()
    model.transform.layers[1] = LocalisedStep(
        IndexedAffine((1,), _linear(a, (0.0, 0.0))),
        prior=ConditionalDiagGaussian(_linear(0.0, (0.0, 0.0)), 1),
        posterior=ConditionalDiagGaussian(_linear(q_mean_slope, (0.0, q_log_std)), 1),
    )
    return model.eval()


def test_exact_posterior_makes_the_elbo_exact_in_one_dimension():
    a = 1.5
    exact_q = _one_dim_model(a, q_mean_slope=-a / (1 + a**2), q_log_std=-0.5 * math.log(1 + a**2))
    x = torch.linspace(-4, 4, 17, dtype=torch.float64).unsqueeze(1)
    truth = diag_gaussian_log_prob(x, 0.0, 0.5 * math.log(1 + a**2))
    with torch.no_grad():
        torch.testing.assert_close(exact_q.elbo(x, _gen(0)), truth, rtol=0, atol=1e-10)


def test_is_estimate_converges_to_the_closed_form_marginal():
    a = 1.5
    model = _one_dim_model(a, q_mean_slope=0.0, q_log_std=math.log(1.5))  # q ignores x: a poor posterior
    x = torch.linspace(-3, 3, 13, dtype=torch.float64).unsqueeze(1)
    truth = diag_gaussian_log_prob(x, 0.0, 0.5 * math.log(1 + a**2))
    with torch.no_grad():
        errors = {k: float((model.log_prob(x, samples=k, generator=_gen(k)) - truth).abs().mean())
                  for k in (1, 100, 20_000)}
    assert errors[1] > 0.2  # the ELBO of a poor q is far off
    assert errors[20_000] < errors[100] < errors[1]
    assert errors[20_000] < 5e-3


def test_ancestral_samples_follow_the_closed_form_marginal():
    a = 1.5
    model = _one_dim_model(a, 0.0, 0.0)
    with torch.no_grad():
        x = model.sample(40_000, generator=_gen(0))
    assert x.shape == (40_000, 1)
    # N(0, 1 + a^2): mean 0 (s.e. 0.009), variance 3.25 (s.e. 0.023)
    assert abs(float(x.mean())) < 0.05
    assert abs(float(x.var()) - (1 + a**2)) < 0.1


# ------------------------------------------------------------------ models and evaluation


def test_seeded_draws_are_reproducible_and_gradients_reach_p_q_s_t():
    model = create("lgf-maf", dim=3, layers=2, hidden=[8, 8], pq_hidden=[8], st_hidden=[8])
    _perturb(model, seed=0, scale=0.1)
    x = torch.randn(16, 3, generator=_gen(1))
    torch.testing.assert_close(model.elbo(x, _gen(2)), model.elbo(x, _gen(2)), rtol=0, atol=0)
    assert not torch.equal(model.elbo(x, _gen(2)), model.elbo(x, _gen(3)))
    out = model.loss((x,), generator=_gen(4))
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    step = localised_steps(model)[0]
    for part in (step.bijection, step.prior, step.posterior):
        assert sum(float(p.grad.abs().sum()) for p in part.parameters()) > 0


@pytest.mark.parametrize("name, args", [
    ("lgf-maf", dict(dim=3, layers=2, hidden=[8])),
    ("lgf-realnvp", dict(image_shape=(1, 4, 4), blocks=1, hidden=4, st_hidden=4, pq_hidden=4, st_blocks=1,
                         pq_blocks=1)),
])
def test_seeded_samples_draw_every_u_from_the_generator(name, args):
    """These base models sample through `decode`: u must come from the sample's generator there."""
    torch.manual_seed(0)
    model = create(name, **args).eval()
    _perturb(model, seed=1, scale=0.1)
    with torch.no_grad():
        a = model.sample(4, generator=_gen(2))
        torch.manual_seed(5)  # the global RNG must not matter
        b = model.sample(4, generator=_gen(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_k_train_samples_average_the_elbo():
    model = create("lgf-maf", dim=2, layers=2, hidden=[8], train_samples=5)
    _perturb(model, seed=0, scale=0.3)
    x = torch.randn(10, 2, generator=_gen(1))
    loss = model.loss(x, generator=_gen(2))["loss"]
    again = -model.elbo(x.repeat(5, 1), _gen(2)).view(5, 10).mean()
    torch.testing.assert_close(loss, again)


def test_evaluation_reports_gap_and_spread():
    model = _random_lgf(seed=5).float()
    model.max_rows = 3000
    x = torch.randn(300, 2, generator=_gen(6))
    out = evaluate_importance(model, x, "nll", samples=50, repeats=3, batch_size=100, seed=0)
    assert out["examples"] == 300 and out["importance_samples"] == 50 and out["repeats"] == 3
    assert len(out["nll_repeats"]) == 3 and len(set(out["nll_repeats"])) == 3  # independent draws
    assert out["nll"] == pytest.approx(sum(out["nll_repeats"]) / 3)
    assert out["elbo_gap"] > 0 and out["nll_elbo"] == pytest.approx(out["nll"] + out["elbo_gap"])
    assert 0 < out["is_relative_std"] < 0.05
    single = evaluate_importance(model, x, "nll", samples=5, repeats=1, batch_size=300, seed=0)
    assert single["is_relative_std"] is None


def test_nonfinite_examples_are_refused_not_dropped():
    from flowforge.errors import NonFiniteError

    model = _random_lgf(seed=6).float()
    x = torch.randn(20, 2, generator=_gen(0))
    x[3, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="1 of 20"):
        evaluate_importance(model, x, "nll", samples=4, repeats=1, batch_size=20)


def test_small_image_lgf_realnvp_trains_estimates_and_samples():
    torch.manual_seed(0)
    model = create("lgf-realnvp", image_shape=(1, 8, 8), blocks=1, hidden=8, st_hidden=4, pq_hidden=8,
                   st_blocks=1, pq_blocks=1)
    assert not any(type(m).__name__ == "BatchNormFlow" for m in model.modules())
    assert len(localised_steps(model)) == 10  # one per coupling
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    out = model.loss((images, torch.zeros(6)), generator=_gen(0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and float(out["bpd"]) > 0
    model.max_rows = 12
    res = evaluate_importance(model, images, "bpd", samples=4, repeats=2, batch_size=3, seed=0)
    assert res["examples"] == 6 and res["elbo_gap"] >= 0 and res["bpd"] < res["bpd_elbo"]
    with torch.no_grad():
        s = model.sample(3, generator=_gen(1))
    assert s.shape == (3, 1, 8, 8) and torch.isfinite(s).all()


def test_bad_sample_counts_are_refused():
    with pytest.raises(ValueError, match="test_samples"):
        create("lgf-maf", dim=2, test_samples=0)
    with pytest.raises(ValueError, match="u_dim"):
        create("lgf-maf", dim=2, u_dim=0)
