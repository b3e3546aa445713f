"""Structure and definition tests for MADE / MAF steps, the batch-norm flow and the logit map.

MADE: the Jacobian of every output head w.r.t. the inputs is zero exactly where the degrees say
(strictly lower-triangular in the degree order) and non-zero everywhere else once the weights are
perturbed. MAF: the step's Jacobian is triangular in its order and the sequential inverse exact.
BatchNormFlow: each mode against its definition. Logit: log-det against autograd, exact round
trip, and -log p of Logit + N(0, I) against a hand computation. The contract test
(tests/test_bijection_contract.py) covers the generic checks for all of them.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from flowforge.bijections import Chain, ReversePermutation
from flowforge.bijections.autoregressive import MAFStep
from flowforge.bijections.elementwise import BatchNormFlow, Logit
from flowforge.errors import ShapeError
from flowforge.models import create
from flowforge.nets.made import MADE
from flowforge.objectives.bits_per_dim import bits_per_dim

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@torch.no_grad()
def perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> None:
    """Seeded noise on every parameter, masked-out weights included, so zero-initialised output
    layers stop hiding connections."""
    gen = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _allowed(degrees: torch.Tensor) -> torch.Tensor:
    """allowed[i, j]: output i may depend on input j, i.e. deg[j] < deg[i]."""
    return degrees[None, :] < degrees[:, None]


# --------------------------------------------------------------------------- MADE structure

MADE_CASES = [
    (1, [4], "forward"),
    (2, [], "forward"),
    (2, [3], "reverse"),
    (3, [2], "forward"),  # hidden narrower than D - 1: some allowed paths are missing
    (5, [16, 16], "forward"),
    (5, [16, 16], "reverse"),
    (5, [8, 6, 8], (3, 1, 5, 2, 4)),
    (6, [10], (6, 2, 4, 1, 3, 5)),
]


@pytest.mark.parametrize("dim,hidden,order", MADE_CASES, ids=str)
@pytest.mark.parametrize("context_dim", [0, 3])
def test_made_jacobian_is_zero_where_the_degrees_say(dim, hidden, order, context_dim):
    made = MADE(dim, hidden, out_multiplier=2, order=order, context_dim=context_dim)
    perturb(made)
    made = made.double()
    expected_degrees = {
        "forward": torch.arange(1, dim + 1),
        "reverse": torch.arange(dim, 0, -1),
    }.get(order) if isinstance(order, str) else torch.tensor(order)
    assert torch.equal(made.input_degrees, expected_degrees)
    allowed = _allowed(made.input_degrees)

    x = torch.randn(dim, dtype=F64)
    c = torch.randn(1, context_dim, dtype=F64) if context_dim else None
    jac = jacobian(lambda u: made(u.view(1, dim), c)[0], x)  # (2 * dim, dim)
    assert jac.shape == (2 * dim, dim)
    # every hidden degree in 1..D-1 present (with context, degree 0 takes one unit in D)
    full_paths = not hidden or min(hidden) >= dim - 1 + (context_dim > 0)
    for head in range(2):
        block = jac[head * dim : (head + 1) * dim]
        assert torch.count_nonzero(block[~allowed]) == 0, block
        if full_paths:  # every allowed connection is realised once the weights are perturbed
            assert bool((block[allowed] != 0).all()), block
    # in the degree order the Jacobian is strictly lower triangular
    order_idx = torch.argsort(made.input_degrees)
    for head in range(2):
        block = jac[head * dim : (head + 1) * dim][order_idx][:, order_idx]
        assert torch.count_nonzero(torch.triu(block)) == 0

    if context_dim:  # the context reaches every output, the first in the order included
        jac_c = jacobian(lambda v: made(x.view(1, dim), v.view(1, context_dim))[0], c[0])
        assert bool((jac_c != 0).all()), jac_c


def test_made_dim_one_without_context_is_constant():
    made = MADE(1, [8, 8])
    perturb(made)
    with torch.no_grad():
        out = made(torch.randn(16, 1))
    assert out.shape == (16, 2)
    torch.testing.assert_close(out, out[:1].expand_as(out), rtol=0, atol=0)
    assert out.abs().sum() > 0  # perturbed biases give a non-trivial constant


def test_made_masks_and_errors():
    made = MADE(4, [5, 5], order="reverse")
    # hidden degrees arange(H) % (D - 1) + 1, inputs given by the order, outputs two heads
    hidden_degrees = torch.tensor([1, 2, 3, 1, 2])
    assert torch.equal(made.hidden_layers[0].mask, (hidden_degrees[:, None] >= made.input_degrees[None, :]).float())
    assert made.output_layer.mask.shape == (8, 5)
    fresh_out = made(torch.randn(3, 4))
    torch.testing.assert_close(fresh_out, torch.zeros(3, 8), rtol=0, atol=0)  # zero-initialised output
    with pytest.raises(ValueError, match="permutation"):
        MADE(3, [4], order=(1, 1, 2))
    with pytest.raises(ValueError, match="order"):
        MADE(3, [4], order="sideways")
    with pytest.raises(ShapeError, match=r"\(B, 4\)"):
        made(torch.randn(3, 5))
    with_context = MADE(4, [5], context_dim=2)
    with pytest.raises(ValueError, match="context"):
        with_context(torch.randn(3, 4))
    with pytest.raises(ShapeError, match=r"\(B, 2\)"):
        with_context(torch.randn(3, 4), torch.randn(3, 3))


# --------------------------------------------------------------------------- MAF step


def test_fresh_maf_step_is_identity():
    step = MAFStep(4, [8])
    x = torch.randn(5, 4)
    z, ld = step(x)
    torch.testing.assert_close(z, x, rtol=0, atol=0)
    torch.testing.assert_close(ld, torch.zeros(5), rtol=0, atol=0)


def test_maf_step_from_a_checkpoint_of_before_keeps_the_shift_before_the_scale():
    """A state dict without `shift_after_scale` (written before the shift moved after the scale)
    loads, through `load_state_dict` and through a model's `upgrade_state_dict`, as the paper's form
    z = (x - mu) exp(-alpha); inverse exact; saved again, it keeps that form."""
    step = MAFStep(3, [8])
    perturb(step, seed=4)
    old = {k: v for k, v in step.state_dict().items() if k != "shift_after_scale"}
    loaded = MAFStep(3, [8])
    loaded.load_state_dict(old)
    x = torch.randn(4, 3)
    with torch.no_grad():
        z, ld = loaded(x)
        mu, alpha = loaded._shift_log_scale(x, None)
        x_back, ld_inv = loaded.inverse(z)
    torch.testing.assert_close(z, (x - mu) * torch.exp(-alpha))
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-5)
    torch.testing.assert_close(ld + ld_inv, torch.zeros(4), rtol=0, atol=1e-5)
    assert not bool(loaded.state_dict()["shift_after_scale"])
    model = create("maf", dim=3, layers=1, hidden=[8], batch_norm=False)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("shift_after_scale")}
    upgraded = model.upgrade_state_dict(state)
    assert not any(bool(v) for k, v in upgraded.items() if k.endswith("shift_after_scale"))
    assert set(upgraded) == set(model.state_dict())


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_maf_jacobian_is_triangular_and_inverse_exact(dim, reverse):
    step = MAFStep(dim, [12, 12], reverse_order=reverse)
    perturb(step, seed=dim)
    step = step.double()
    x = torch.randn(3, dim, dtype=F64)
    with torch.no_grad():
        z, ld = step(x)
        x_back, ld_inv = step.inverse(z)
        mu, alpha = step._shift_log_scale(x, None)
    assert (x_back - x).abs().max() < 1e-12
    torch.testing.assert_close(ld + ld_inv, torch.zeros(3, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(z, x * torch.exp(-alpha) + mu, rtol=0, atol=1e-14)
    for i in range(3):
        jac = jacobian(lambda u: step(u.view(1, dim))[0][0], x[i])
        # z_i depends on x_i and the x_j earlier in the order: lower (forward) / upper (reverse)
        off = torch.triu(jac, 1) if not reverse else torch.tril(jac, -1)
        assert torch.count_nonzero(off) == 0
        torch.testing.assert_close(torch.diagonal(jac), torch.exp(-alpha[i]), rtol=0, atol=1e-12)
        assert abs(torch.linalg.slogdet(jac)[1].item() - ld[i].item()) < 1e-8
        if dim > 1:  # the conditioner really acts
            strict = torch.tril(jac, -1) if not reverse else torch.triu(jac, 1)
            assert torch.count_nonzero(strict) > 0


def test_maf_with_context_and_reverse_permutation_chain():
    flow = Chain([MAFStep(3, [10], context_dim=2), ReversePermutation(3), MAFStep(3, [10], context_dim=2)])
    perturb(flow)
    flow = flow.double()
    x = torch.randn(4, 3, dtype=F64)
    c = torch.randn(4, 2, dtype=F64)
    with torch.no_grad():
        z, ld = flow(x, context=c)
        x_back, ld_inv = flow.inverse(z, context=c)
        z_other, _ = flow(x, context=c + 1.0)
    assert (x_back - x).abs().max() < 1e-12
    torch.testing.assert_close(ld + ld_inv, torch.zeros(4, dtype=F64), rtol=0, atol=1e-12)
    assert (z_other - z).abs().max() > 1e-3  # the context matters
    # dim 1 with context: mu and alpha are functions of the context alone
    step = MAFStep(1, [6], context_dim=2)
    perturb(step)
    with torch.no_grad():
        z1, _ = step(torch.zeros(2, 1), context=torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
    assert (z1[0] - z1[1]).abs().item() > 1e-4


# --------------------------------------------------------------------------- BatchNormFlow


def test_batchnorm_running_averages_converge_to_data_statistics():
    mean = torch.tensor([-1.0, 0.5, 2.0])
    std = torch.tensor([0.5, 3.0, 1.0])
    flat = BatchNormFlow(3)
    image = BatchNormFlow(3)  # per channel over batch and space
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(80):
            flat(mean + std * torch.randn(2048, 3, generator=gen))
            image(mean.view(1, 3, 1, 1) + std.view(1, 3, 1, 1) * torch.randn(128, 3, 4, 4, generator=gen))
    for layer in (flat, image):
        torch.testing.assert_close(layer.running_mean, mean, rtol=0, atol=0.05)
        torch.testing.assert_close(layer.running_var, std**2, rtol=0.03, atol=0)


def _by_hand(x, mean, var, log_gamma, beta, eps=1e-5):
    view = (1, -1) + (1,) * (x.dim() - 2)
    y = (x - mean.view(view)) / torch.sqrt(var.view(view) + eps) * log_gamma.exp().view(view) + beta.view(view)
    ld = (log_gamma - 0.5 * torch.log(var + eps)).sum() * x[0, 0].numel()
    return y, ld.expand(x.shape[0])


@pytest.mark.parametrize("shape", [(6, 3), (5, 3, 2, 2)], ids=["flat", "image"])
def test_batchnorm_train_and_eval_follow_their_definitions(shape):
    layer = BatchNormFlow(3, momentum=0.2).double()
    perturb(layer)
    x = 2.0 * torch.randn(*shape, dtype=F64) + 1.0
    dims = [0] + list(range(2, len(shape)))
    n = x.numel() // 3

    # inverse before any forward: running averages (0, 1)
    with torch.no_grad():
        x0, _ = layer.inverse(x)
    x0_hand = _by_hand_inverse(x, torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64), layer)
    torch.testing.assert_close(x0, x0_hand, rtol=0, atol=1e-12)

    # training: batch mean and biased variance; running averages updated by the momentum rule
    with torch.no_grad():
        y, ld = layer(x)
    b_mean, b_var = x.mean(dims), x.var(dims, unbiased=False)
    y_hand, ld_hand = _by_hand(x, b_mean, b_var, layer.log_gamma, layer.beta)
    torch.testing.assert_close(y, y_hand, rtol=0, atol=1e-12)
    torch.testing.assert_close(ld, ld_hand, rtol=0, atol=1e-12)
    torch.testing.assert_close(layer.running_mean, 0.2 * b_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(layer.running_var, 0.8 + 0.2 * b_var * n / (n - 1), rtol=0, atol=1e-12)
    # training-mode inverse: the exact inverse of the forward just applied
    with torch.no_grad():
        x_back, ld_inv = layer.inverse(y)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(ld_inv, -ld, rtol=0, atol=1e-12)

    # eval: running averages in both directions, which no longer move
    layer.eval()
    running = (layer.running_mean.clone(), layer.running_var.clone())
    x2 = torch.randn(*shape, dtype=F64)
    with torch.no_grad():
        y2, ld2 = layer(x2)
        x2_back, ld2_inv = layer.inverse(y2)
    y2_hand, ld2_hand = _by_hand(x2, *running, layer.log_gamma, layer.beta)
    torch.testing.assert_close(y2, y2_hand, rtol=0, atol=1e-12)
    torch.testing.assert_close(ld2, ld2_hand, rtol=0, atol=1e-12)
    torch.testing.assert_close(x2_back, x2, rtol=0, atol=1e-12)
    torch.testing.assert_close(ld2_inv, -ld2, rtol=0, atol=1e-12)
    assert torch.equal(layer.running_mean, running[0]) and torch.equal(layer.running_var, running[1])
    # eval log-det is exact: the map is affine per example
    jac = jacobian(lambda u: layer(u.view(1, *shape[1:]))[0].flatten(), x2[0])
    assert abs(torch.linalg.slogdet(jac.reshape(x2[0].numel(), -1))[1].item() - ld2[0].item()) < 1e-8


def _by_hand_inverse(z, mean, var, layer, eps=1e-5):
    view = (1, -1) + (1,) * (z.dim() - 2)
    scale = (-layer.log_gamma).exp().view(view) * torch.sqrt(var.view(view) + eps)
    return (z - layer.beta.view(view)) * scale + mean.view(view)


def test_batchnorm_train_logdet_treats_statistics_as_constants():
    """The training-mode log-det is that of the map with the batch statistics frozen; the true
    Jacobian of the whole-batch map (statistics moving with the batch) differs."""
    layer = BatchNormFlow(2).double()
    perturb(layer)
    x = torch.randn(4, 2, dtype=F64)
    with torch.no_grad():
        _, ld = layer(x)
    mean, var = layer.last_batch_statistics
    frozen = jacobian(lambda u: layer.normalise(u.view(1, 2), mean, var)[0][0], x[0])
    assert abs(torch.linalg.slogdet(frozen)[1].item() - ld[0].item()) < 1e-8
    whole = jacobian(lambda u: layer(u)[0], x)  # (4, 2, 4, 2): the batch map
    block = whole[0, :, 0, :]
    assert abs(torch.linalg.slogdet(block)[1].item() - ld[0].item()) > 1e-3


def test_batchnorm_errors():
    layer = BatchNormFlow(3)
    with pytest.raises(ValueError, match="more than one value"):
        layer(torch.randn(1, 3))
    layer(torch.randn(1, 3, 2, 2))  # per channel: 4 values per statistic suffice
    with pytest.raises(ShapeError, match=r"\(B, 3\) or \(B, 3, H, W\)"):
        layer(torch.randn(4, 4))
    with pytest.raises(ValueError, match="per"):
        BatchNormFlow(3, per="pixel")


# --------------------------------------------------------------------------- Logit


@pytest.mark.parametrize("alpha", [1e-6, 0.05])
def test_logit_logdet_matches_autograd_and_round_trip_is_exact(alpha):
    layer = Logit(alpha, n_bits=8)
    x = torch.tensor([[1e-3, 0.5, 17.25, 128.0, 254.9, 255.999]], dtype=F64)
    y, ld = layer(x)
    x_back, ld_inv = layer.inverse(y)
    assert (x_back - x).abs().max() < 1e-9
    torch.testing.assert_close(ld + ld_inv, torch.zeros(1, dtype=F64), rtol=0, atol=1e-9)
    jac = jacobian(lambda u: layer(u.view(1, -1))[0][0], x[0])
    assert torch.count_nonzero(jac - torch.diag(torch.diagonal(jac))) == 0
    assert abs(torch.linalg.slogdet(jac)[1].item() - ld.item()) < 1e-8
    jac_inv = jacobian(lambda u: layer.inverse(u.view(1, -1))[0][0], y[0])
    assert abs(torch.linalg.slogdet(jac_inv)[1].item() - ld_inv.item()) < 1e-8


def test_logit_density_and_bits_per_dim_by_hand():
    """-log p(x) of Logit + N(0, I) in level units, against the formula written out in math."""
    alpha, n = 0.05, 8
    x = torch.tensor([[3.5, 100.25, 200.75], [0.1, 255.5, 64.0]], dtype=F64)
    z, ld = Logit(alpha, n_bits=n)(x)
    log_p = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(1) + ld
    for b in range(2):
        hand = 0.0
        for v in x[b].tolist():
            p = alpha + (1 - 2 * alpha) * v / 2**n
            y = math.log(p / (1 - p))
            hand += -0.5 * y * y - 0.5 * math.log(2 * math.pi)
            hand += math.log(1 - 2 * alpha) - n * math.log(2) - math.log(p) - math.log(1 - p)
        assert abs(log_p[b].item() - hand) < 1e-10

    # the same model reading the library's model space [-0.5, 0.5): its density is 2^(nD) times
    # larger, and bits_per_dim's constant brings it back to -log p(levels) / (D log 2)
    z_m, ld_m = Logit(alpha, scale=1.0, low=-0.5)(x / 2**n - 0.5)
    torch.testing.assert_close(z_m, z, rtol=0, atol=1e-12)
    log_p_model = (-0.5 * z_m**2 - 0.5 * math.log(2 * math.pi)).sum(1) + ld_m
    shift = torch.full((2,), 3 * n * math.log(2), dtype=F64)
    torch.testing.assert_close(log_p_model - log_p, shift, rtol=0, atol=1e-10)
    torch.testing.assert_close(bits_per_dim(log_p_model, 3, n), -log_p / (3 * math.log(2)), rtol=0, atol=1e-12)


def test_logit_rejects_inputs_outside_its_range():
    layer = Logit(0.05, n_bits=3)
    with pytest.raises(ValueError, match=r"\[0.0, 8.0\]"):
        layer(torch.tensor([[1.0, 8.5]]))
    with pytest.raises(ValueError, match="range|\\["):
        layer(torch.tensor([[-0.5, 1.0]]))
    with pytest.raises(ValueError, match="got values in"):
        layer(torch.tensor([[float("nan"), 1.0]]))
    Logit(0.05, n_bits=3, check_range=False)(torch.tensor([[1.0, 8.5]]))  # NaN, but no host sync
    with pytest.raises(ValueError, match="alpha"):
        Logit(0.5)
