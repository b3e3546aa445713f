"""Residual flows beyond the contract test: the Lipschitz bound of the spectrally normalised
layers, unbiasedness of the Russian-roulette log-det estimator and of its Neumann gradient,
the fixed-point inverse's tolerance and warning, and the flat and image models."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from flowforge.bijections.residual import ResidualBlock, ResidualInverseWarning
from flowforge.bijections.residual_logdet import RouletteEstimator, exact_logdet
from flowforge.models import create
from flowforge.nets.lipschitz import (
    LipSwish,
    SpectralNormConv2d,
    SpectralNormLinear,
    lipschitz_mlp,
    update_lipschitz,
)

COEFF = 0.98
SLACK = 1e-2  # power iteration stops at a relative tolerance of 1e-3: sigma is underestimated a little


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _scaled(layer, factor: float):
    with torch.no_grad():
        layer.weight.mul_(factor)  # far above the coefficient: the normalisation must act
    update_lipschitz(layer)
    return layer


def test_spectral_norm_linear_is_at_most_coeff():
    layer = _scaled(SpectralNormLinear(7, 5, COEFF), 10.0)
    norm = torch.linalg.matrix_norm(layer.normalised_weight().detach(), ord=2).item()
    assert norm <= COEFF * (1 + SLACK)
    assert norm >= COEFF * (1 - SLACK)  # and it does not over-shrink either


@pytest.mark.parametrize("kernel", [3, 1])
def test_spectral_norm_conv_operator_norm_is_at_most_coeff(kernel):
    layer = _scaled(SpectralNormConv2d(3, 4, kernel, (5, 5), COEFF), 10.0)
    weight = layer.normalised_weight().detach()
    op = jacobian(lambda v: torch.nn.functional.conv2d(v.view(1, 3, 5, 5), weight, padding=kernel // 2).flatten(),
                  torch.zeros(75))
    norm = torch.linalg.matrix_norm(op, ord=2).item()  # the l2 operator norm on 5x5 images
    assert norm <= COEFF * (1 + SLACK)
    assert norm >= COEFF * (1 - SLACK)


def test_lipswish_is_one_lipschitz():
    act = LipSwish(init=3.0)
    x = torch.linspace(-20, 20, 20001, requires_grad=True)
    (grad,) = torch.autograd.grad(act(x).sum(), x)
    assert grad.abs().max().item() <= 1.0


def test_power_iteration_refresh_is_idempotent_and_only_in_training_forward():
    block = ResidualBlock(lipschitz_mlp(3, [8]), (3,))
    sn = block.net[1]
    with torch.no_grad():
        sn.weight.add_(torch.randn_like(sn.weight))
    u0 = sn.u.clone()
    block.eval()
    block(torch.randn(4, 3))
    assert torch.equal(sn.u, u0)  # eval mode never refreshes
    block.train()
    block(torch.randn(4, 3))
    assert not torch.equal(sn.u, u0)
    u1 = sn.u.clone()
    block(torch.randn(4, 3))
    assert torch.equal(sn.u, u1)  # converged: the same function on every later forward
    assert update_lipschitz(block) == 0


def _strong_block(dim: int) -> ResidualBlock:
    """A block whose g has a Jacobian of norm near the coefficient at the inputs of `_strong_input`
    (so the higher series terms matter): g = W LipSwish(x) + b with ||W|| = 0.98 and LipSwish's
    slope near its maximum 1/1.1 for large beta x."""
    block = ResidualBlock(lipschitz_mlp(dim, []), (dim,))
    with torch.no_grad():
        block.net[0].beta.fill_(5.0)
    _scaled(block.net[1], 10.0)
    return block


def _strong_input(n: int, dim: int) -> torch.Tensor:
    return 3.0 + 0.3 * torch.randn(n, dim, dtype=torch.float64)


@pytest.mark.parametrize("n_dist", ["geometric", "poisson"])
def test_roulette_estimator_is_unbiased(n_dist):
    dim, draws, copies = 3, 400, 25
    block = _strong_block(dim).double().eval()
    x = _strong_input(1, dim).requires_grad_(True)
    gx = block.net(x)
    exact, _ = exact_logdet(gx, x, create_graph=False)
    estimator = RouletteEstimator(n_exact_terms=1, n_dist=n_dist)
    xs = x.detach().expand(copies, dim).clone().requires_grad_(True)
    gxs = block.net(xs)
    means = torch.stack([estimator(gxs, xs, create_graph=False).mean() for _ in range(draws)])
    truncated = RouletteEstimator(n_exact_terms=1, n_dist=n_dist)
    # the series matters here: the first term alone (the trace) is far from the log-det
    first = torch.stack([truncated(gxs, xs, create_graph=False, n=0).mean() for _ in range(50)]).mean()
    se = means.std() / math.sqrt(draws)
    assert abs(means.mean() - exact.item()) < 4 * se
    assert abs(first - exact.item()) > 10 * se


def test_neumann_gradient_is_unbiased_and_value_unchanged():
    dim, draws = 3, 600
    block = _strong_block(dim).double()
    params = [p for p in block.net.parameters()]
    x = _strong_input(1, dim)

    def grads(fn):
        xin = x.clone().requires_grad_(True)
        value = fn(block.net(xin), xin).sum()
        grads = torch.autograd.grad(value, params, allow_unused=True)  # g's bias does not enter the log-det
        return value.detach(), torch.cat([torch.zeros_like(p).flatten() if g is None else g.flatten()
                                          for p, g in zip(params, grads)])

    _, exact_grad = grads(lambda gx, xin: exact_logdet(gx, xin, create_graph=True)[0])
    estimator = RouletteEstimator(n_exact_terms=2, neumann_grad=True)
    samples = torch.stack([grads(lambda gx, xin: estimator(gx, xin, create_graph=True))[1] for _ in range(draws)])
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(draws)
    big = exact_grad.abs() > 1e-3
    assert big.sum() >= 9  # W and beta
    z = ((mean - exact_grad) / (se + 1e-12))[big]
    assert z.abs().max() < 5  # every sizeable gradient component within 5 standard errors
    # the value is the basic estimator's (same v and n), not the surrogate's
    xin = x.clone().requires_grad_(True)
    gx = block.net(xin)
    torch.manual_seed(5)
    neumann_value = estimator(gx, xin, create_graph=True)
    torch.manual_seed(5)
    basic_value = RouletteEstimator(n_exact_terms=2, neumann_grad=False)(gx, xin, create_graph=False)
    torch.testing.assert_close(neumann_value.detach(), basic_value, rtol=1e-12, atol=1e-12)


def test_fixed_point_inverse_meets_its_tolerance():
    block = _strong_block(4).double().eval()
    atol = rtol = 1e-5
    block.inverse_atol, block.inverse_rtol, block.inverse_grad_steps = atol, rtol, 0
    x = _strong_input(64, 4)
    with torch.no_grad():
        y, _ = block(x)
        x_back, _ = block.inverse(y)
    assert block.last_inverse["converged"]
    assert block.last_inverse["iterations"] > 3  # a strong block: the iteration really works
    lip = COEFF * (1 + SLACK)
    bound = lip / (1 - lip) * (atol + rtol * y.abs())  # contraction: error <= L / (1 - L) * last step
    assert ((x_back - x).abs() <= bound).all()
    assert (x_back - x).abs().max() > 0


def test_inverse_warns_when_not_converged():
    block = _strong_block(4).eval()
    block.inverse_max_iter = 1
    y = 3 * torch.randn(16, 4)
    with pytest.warns(ResidualInverseWarning, match="no convergence after 1"):
        block.inverse(y)
    assert block.last_inverse == {"iterations": 1, "converged": False, "max_step": pytest.approx(
        block.last_inverse["max_step"])}
    assert block.last_inverse["max_step"] > 0


def test_flat_resflow_eval_density_integrates_to_one():
    model = create("flat-resflow", dim=2, blocks=3, hidden=[16])
    model.initialize(torch.randn(256, 2) * 0.5)
    for m in model.modules():
        if isinstance(m, SpectralNormLinear):
            _scaled(m, 5.0)
    model.eval()  # brute-force log-det in eval mode
    side = torch.linspace(-8, 8, 241)
    grid = torch.cartesian_prod(side, side)
    with torch.no_grad():
        logp = model.log_prob(grid)
    assert torch.isfinite(logp).all()
    mass = logp.exp().sum().item() * (side[1] - side[0]).item() ** 2
    assert abs(mass - 1.0) < 0.02


def test_flat_resflow_trains_and_eval_matches_estimator_mean():
    torch.manual_seed(1)
    model = create("flat-resflow", dim=2, blocks=2, hidden=[16])
    angle = 3 * torch.rand(128)
    x = torch.stack([angle.cos(), angle.sin()], 1) * 2 + 0.1 * torch.randn(128, 2)  # an arc: not Gaussian
    model.initialize(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model.loss(x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < losses[0] - 0.1
    with torch.no_grad():
        model.eval()
        exact = model.log_prob(x[:8])
        model.train()
        for block in model.transform.layers:
            if isinstance(block, ResidualBlock):
                block.eval_logdet_mode = "estimator"
        model.eval()
        draws = torch.stack([model.log_prob(x[:8]) for _ in range(200)])
    se = draws.std(0) / math.sqrt(200)
    assert ((draws.mean(0) - exact).abs() < 4 * se).all()  # eval-mode estimator: unbiased for the exact log p


def test_log_prob_kind_says_estimate_unless_evaluated_exactly():
    assert create("resflow", image_shape=(1, 8, 8), scales=1, blocks=1, hidden=4).log_prob_kind == "roulette-estimate"
    assert create("flat-resflow", dim=2, blocks=1, hidden=[4]).log_prob_kind == "exact"
    assert create("flat-resflow", dim=2, blocks=1, hidden=[4], eval_logdet="estimator").log_prob_kind == "roulette-estimate"


def test_resflow_image_model_round_trip_and_finite_bpd():
    model = create("resflow", image_shape=(1, 8, 8), n_bits=5, scales=2, blocks=1, hidden=8)
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    model.initialize(images)
    out = model.loss(images)
    out["loss"].backward()
    assert math.isfinite(out["bpd"].item())
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        x = model.prepare(images)
        z = model.encode(x)
        assert z[0].shape == (6, 4, 4, 4)
        assert (model.decode(z) - x).abs().max() < 1e-3
        samples = model.sample(3)
    assert samples.shape == (3, 1, 8, 8) and torch.isfinite(samples).all()


def test_resflow_rejects_bad_scales():
    with pytest.raises(ValueError, match="divisible by 4"):
        create("resflow", image_shape=(1, 6, 6), n_bits=5, scales=3)


def test_logdet_skipped_gives_the_same_map_and_nan_logdet():
    from flowforge.bijections.residual import logdet_skipped

    model = create("resflow", image_shape=(1, 8, 8), n_bits=5, scales=2, blocks=1, hidden=8)
    images = torch.randint(0, 32 * 8, (4, 1, 8, 8), dtype=torch.uint8)
    model.initialize(images)
    model.eval()
    x = model.prepare(images)
    with torch.no_grad():
        z, ld = model.transform(x)
        with logdet_skipped(model):
            z2, ld2 = model.transform(x)
            x2, ld_inv = model.transform.inverse(z2)
    torch.testing.assert_close(z2, z, rtol=0, atol=0)
    assert torch.isfinite(ld).all() and torch.isnan(ld2).all() and torch.isnan(ld_inv).all()
    assert (x2 - x).abs().max() < 1e-3
    with torch.no_grad():
        assert torch.isfinite(model.transform(x)[1]).all()  # restored on exit


def test_non_finite_input_stops_the_inverse_at_once_and_is_kept():
    block = _strong_block(4).eval()
    y = torch.randn(3, 4)
    y[1, 2] = float("nan")
    with pytest.warns(ResidualInverseWarning):
        x, _ = block.inverse(y)
    assert block.last_inverse["iterations"] == 1 and not block.last_inverse["converged"]
    assert torch.isnan(x[1]).any()  # never silently replaced
