"""One contract test over every invertible layer (STYLE.md "Tests", DESIGN.md "Conventions").

Every layer is built small, its ActNorms are initialised from a random batch, and every parameter
is then perturbed with seeded noise: zero-initialised output convolutions would otherwise make the
couplings the identity and the checks vacuous. The checks: exact inverse, log-det equal to
log|det| of the autograd Jacobian in float64, forward + inverse log-dets summing to zero, gradients
reaching every parameter, batch independence, eval == train, state-dict round trip and shape
errors at the boundary. Structure tests for the LU 1x1 convolution, the 1x1 inverse cache and the
coupling mask follow.

Layers whose inputs are not standard normal (Logit reads pixel values in level units) bring
their own input factory; BatchNormFlow is tested in eval mode after training-mode forwards (its
running averages non-trivial) and in training mode, where the log-det is checked against the
Jacobian of the map with the batch statistics held fixed (the RealNVP / MAF convention).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest
import torch
from torch import Tensor
from torch.autograd.functional import jacobian

from flowforge.bijections import (
    SCALE_FUNCTIONS,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Bijection,
    Inverse,
    InvertibleConv1x1,
    InvertibleConv1x1LU,
    ReversePermutation,
    ShufflePermutation,
    Squeeze,
    data_dependent_init,
    is_initialized,
)
from flowforge.bijections.autoregressive import MAFStep
from flowforge.bijections.elementwise import BatchNormFlow, Logit
from flowforge.bijections.glow_coupling_net import GlowCouplingNet
from flowforge.bijections.masked_coupling import MaskedAffineCoupling, alternating_mask, channel_mask, checkerboard_mask
from flowforge.bijections.residual import ResidualBlock
from flowforge.errors import ShapeError
from flowforge.models.glow import flow_step
from flowforge.models.inn_classifier import inn_body
from flowforge.models.vae_flow import glow_layer
from flowforge.nets.lipschitz import lipschitz_conv_net, lipschitz_mlp
from flowforge.nets.mlp import MLP
from flowforge.nets.resnet import ResNet

HIDDEN = 8  # coupling-network width
SIDE = 4  # images are (C, SIDE, SIDE)
CHANNELS = 4  # round trip, gradients, batch independence, eval/train, save/load
JAC_CHANNELS = 2  # Jacobian checks: (2, 4, 4) images -> 32 dimensions
BATCH = 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- the layers


def _net(edge_bias: bool = False):
    return partial(GlowCouplingNet, hidden=HIDDEN, edge_bias=edge_bias)


def _channel_message(c: int) -> str:
    return f"(B, {c}, ...)"


def _perm_message(c: int) -> str:
    return f"(B, {c}) or (B, {c}, H, W)"


def _normal(shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=gen)


@dataclass(frozen=True)
class Case:
    """A layer to test: `make(channels, seed)` builds it for inputs of `shape(channels)`."""

    id: str
    make: Callable[[int, int], Bijection]
    flat: bool = False
    fixed_shape: tuple[int, ...] | None = None  # an input shape (without batch) not set by channels
    sample: Callable[[tuple[int, ...], torch.Generator], Tensor] = _normal  # inputs of that shape
    atol: float = 1e-5  # float32 round trip / log-det sum / batch independence
    # BatchNormFlow: tested in eval mode (running averages), or in training mode, where the forward
    # normalises with the batch's statistics; `frozen_forward(layer)` is then the forward map with
    # the statistics of the layer's last forward held fixed
    eval_mode: bool = False
    frozen_forward: Callable[[Bijection], Callable[[Tensor], tuple[Tensor, Tensor]]] | None = None
    # bad input shapes (without batch) for forward / inverse, and the expected-shape text
    bad_in: Callable[[int], tuple] = lambda c: (c + 1, SIDE, SIDE)
    bad_out: Callable[[int], tuple] = lambda c: (c + 1, SIDE, SIDE)
    expected: Callable[[int], str] = _channel_message
    expected_out: Callable[[int], str] | None = None  # when the inverse words it differently

    @property
    def batch_statistics(self) -> bool:
        return self.frozen_forward is not None

    def shape(self, channels: int) -> tuple[int, ...]:
        if self.fixed_shape is not None:
            return self.fixed_shape
        return (4 * channels,) if self.flat else (channels, SIDE, SIDE)

    def __str__(self) -> str:
        return self.id


def _maf(dim: int, hidden: list[int], reverse: bool = False) -> Case:
    return Case(
        f"maf-{dim}{'-reverse' if reverse else ''}",
        lambda c, s: MAFStep(dim, hidden, reverse_order=reverse),
        fixed_shape=(dim,),
        bad_in=lambda c: (dim + 1,),
        bad_out=lambda c: (dim, 2),
        expected=lambda c: f"(B, {dim})",
    )


def _trained_batchnorm(layer: BatchNormFlow, shape: tuple[int, ...], seed: int) -> BatchNormFlow:
    """A few training-mode forwards on non-standard data, so the running averages are not (0, 1)."""
    gen = torch.Generator().manual_seed(200 + seed)
    with torch.no_grad():
        for _ in range(5):
            layer(3.0 * torch.randn(16, *shape, generator=gen) - 1.0)
    return layer.eval()


def _frozen_batchnorm(layer: BatchNormFlow) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    mean, var = layer.last_batch_statistics
    return lambda u: layer.normalise(u, mean, var)


def _levels(n_bits: int) -> Callable[[tuple[int, ...], torch.Generator], Tensor]:
    """Dequantised n-bit pixel values in level units: k + u, k in 0..2^n - 1, u ~ U(0, 1)."""

    def sample(shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
        k = torch.randint(0, 2**n_bits, shape, generator=gen).float()
        return (k + torch.rand(shape, generator=gen)).clamp(1e-3, 2**n_bits - 1e-3)

    return sample


_flat = dict(
    flat=True,
    bad_in=lambda c: (4 * c + 1,),
    bad_out=lambda c: (4 * c + 1,),
    expected=lambda c: _perm_message(4 * c),
)

CASES = [
    Case("actnorm", lambda c, s: ActNorm(c)),
    Case(
        "actnorm-flat",
        lambda c, s: ActNorm(4 * c),
        flat=True,
        bad_in=lambda c: (4 * c + 1,),
        bad_out=lambda c: (4 * c + 1,),
        expected=lambda c: _channel_message(4 * c),
    ),
    Case("conv1x1", lambda c, s: InvertibleConv1x1(c, seed=s), expected=_perm_message),
    Case("conv1x1-lu", lambda c, s: InvertibleConv1x1LU(c, seed=s), expected=_perm_message),
    Case(
        "conv1x1-lu-flat",
        lambda c, s: InvertibleConv1x1LU(4 * c, seed=s),
        flat=True,
        bad_in=lambda c: (4 * c, 3),  # 3-D input is neither (B, C) nor (B, C, H, W)
        bad_out=lambda c: (4 * c + 1,),
        expected=lambda c: _perm_message(4 * c),
    ),
    Case("reverse", lambda c, s: ReversePermutation(c), expected=_perm_message),
    Case("shuffle", lambda c, s: ShufflePermutation(c, seed=s), expected=_perm_message),
    *[
        Case(f"affine-{name}", lambda c, s, name=name: AffineCoupling(c, _net(), scale=name))
        for name in SCALE_FUNCTIONS
    ],
    Case("additive", lambda c, s: AdditiveCoupling(c, _net())),
    Case("affine-edge-bias", lambda c, s: AffineCoupling(c, _net(edge_bias=True), scale="sigmoid")),
    Case(
        "squeeze",
        lambda c, s: Squeeze(),
        bad_in=lambda c: (c, SIDE - 1, SIDE),
        bad_out=lambda c: (4 * c + 2, SIDE // 2, SIDE // 2),
        expected=lambda c: "(B, C, H, W) with even H and W",
        expected_out=lambda c: "(B, 4C, H, W)",
    ),
    Case("glow-step", lambda c, s: flow_step(c, HIDDEN, "affine", "sigmoid", "conv1x1-lu", seed=s)),
    Case("inverse-affine", lambda c, s: Inverse(AffineCoupling(c, _net(), scale="sigmoid"))),
    Case("reverse-flat", lambda c, s: ReversePermutation(4 * c), **_flat),
    _maf(5, [16, 16]),
    _maf(5, [16, 16], reverse=True),
    _maf(1, [8]),
    _maf(2, [8, 8]),
    Case(
        "batchnorm-eval",
        lambda c, s: _trained_batchnorm(BatchNormFlow(c), (c, SIDE, SIDE), s),
        eval_mode=True,
        expected=_perm_message,
    ),
    Case(
        "batchnorm-flat-eval",
        lambda c, s: _trained_batchnorm(BatchNormFlow(4 * c), (4 * c,), s),
        eval_mode=True,
        **_flat,
    ),
    Case(
        "batchnorm-element-eval",
        lambda c, s: _trained_batchnorm(BatchNormFlow((c, SIDE, SIDE), per="element"), (c, SIDE, SIDE), s),
        eval_mode=True,
        expected=lambda c: f"(B, *{(c, SIDE, SIDE)})",
    ),
    Case("batchnorm-train", lambda c, s: BatchNormFlow(c), frozen_forward=_frozen_batchnorm, expected=_perm_message),
    Case(
        "batchnorm-flat-train",
        lambda c, s: BatchNormFlow(4 * c),
        frozen_forward=_frozen_batchnorm,
        **_flat,
    ),
    Case(
        "logit-3bit",
        lambda c, s: Logit(0.05, n_bits=3),
        sample=_levels(3),
        bad_in=lambda c: (),
        bad_out=lambda c: (),
        expected=lambda c: "(B, ...)",
    ),
    Case(
        "logit-8bit-flat",
        lambda c, s: Logit(1e-6, n_bits=8),
        flat=True,
        sample=_levels(8),
        atol=1e-4,  # values up to 256 in float32: one ulp of p is 1.5e-5 in x
        bad_in=lambda c: (),
        bad_out=lambda c: (),
        expected=lambda c: "(B, ...)",
    ),
]
CASES += [
    # RealNVP's masked couplings; the image ResNet holds batch norms, so it is tested in eval mode
    Case(
        "masked-checkerboard",
        lambda c, s: MaskedAffineCoupling(checkerboard_mask(c, SIDE, SIDE), net=ResNet(c, 2 * c, hidden=8, blocks=1)).eval(),
        eval_mode=True,
        expected=lambda c: f"(B, {c}, {SIDE}, {SIDE})",
    ),
    Case(
        "masked-channel",
        lambda c, s: MaskedAffineCoupling(channel_mask(c, SIDE, SIDE, invert=True),
                                          net=ResNet(c, 2 * c, hidden=8, blocks=1)).eval(),
        eval_mode=True,
        expected=lambda c: f"(B, {c}, {SIDE}, {SIDE})",
    ),
    Case(
        "masked-flat",
        lambda c, s: MaskedAffineCoupling(alternating_mask(4 * c), shift_net=MLP(4 * c, 4 * c, [8], "relu"),
                                          log_scale_net=MLP(4 * c, 4 * c, [8], "tanh")),
        flat=True,
        bad_in=lambda c: (4 * c + 1,),
        bad_out=lambda c: (4 * c + 1,),
        expected=lambda c: f"(B, {4 * c})",
    ),
]
CASES += [  # INN classifier body: squeeze -> Glow steps, no splits (models/inn_classifier.py)
    # one affine step: two perturbed affine steps contract so much (log-det ~ -100 over 64 dims) that
    # float32 round-off in their inverse exceeds the batch-independence tolerance
    Case(
        f"inn-body-{coupling}-{permutation}",
        lambda c, s, coupling=coupling, permutation=permutation, depth=depth: inn_body(
            (c, SIDE, SIDE), levels=1, depth=depth, hidden=HIDDEN, coupling=coupling, scale="sigmoid",
            permutation=permutation, seed=s),
        bad_in=lambda c: (c, SIDE - 1, SIDE),
        bad_out=lambda c: (4 * c + 1, SIDE // 2, SIDE // 2),
        expected=lambda c: "(B, C, H, W) with even H and W",
        expected_out=lambda c: f"(B, {4 * c}, ...)",
    )
    for coupling, permutation, depth in (("affine", "conv1x1", 1), ("additive", "shuffle", 2))
]
from flowforge.bijections.memory_saving import MemorySavingChain  # noqa: E402

CASES += [  # memory-saving backprop wrapper (bijections/memory_saving.py): the same map, whose
    # backward rebuilds activations from outputs; both directions go through it
    Case("memory-saving-glow-step",
         lambda c, s: MemorySavingChain(flow_step(c, HIDDEN, "affine", "sigmoid", "conv1x1-lu", seed=s))),
]
# --------------------------------------------------------------------------- residual flows
# Residual blocks in exact-log-det mode (brute-force Jacobian; the Newton-refined fixed-point
# inverse is exact to rounding); the estimator, the fixed-point tolerance and the Lipschitz
# bound are tested in tests/test_residual.py.

CASES += [  # residual flows
    Case(
        "residual-exact-flat",
        lambda c, s: ResidualBlock(lipschitz_mlp(4 * c, [16]), (4 * c,), logdet="exact", eval_logdet="exact"),
        flat=True,
        bad_in=lambda c: (4 * c + 1,),
        bad_out=lambda c: (4 * c + 1,),
        expected=lambda c: f"(B, {4 * c})",
    ),
    Case(
        "residual-exact-conv",
        lambda c, s: ResidualBlock(lipschitz_conv_net(c, 8, (SIDE, SIDE)), (c, SIDE, SIDE), logdet="exact",
                                   eval_logdet="exact"),
        expected=lambda c: f"(B, {c}, {SIDE}, {SIDE})",
    ),
    # the flat coupling with a bounded scale (the 2-D stability study's affine models)
    *[
        Case(
            f"masked-flat-{name}",
            lambda c, s, name=name: MaskedAffineCoupling(alternating_mask(4 * c), shift_net=MLP(4 * c, 4 * c, [8], "relu"),
                                                         log_scale_net=MLP(4 * c, 4 * c, [8], "tanh"), scale=name),
            flat=True,
            bad_in=lambda c: (4 * c + 1,),
            bad_out=lambda c: (4 * c + 1,),
            expected=lambda c: f"(B, {4 * c})",
        )
        for name in ("sigmoid", "squashed-sigmoid")
    ],
]
assert {f"affine-{name}" for name in SCALE_FUNCTIONS} <= {case.id for case in CASES}

parametrize_cases = pytest.mark.parametrize("case", CASES, ids=str)


@torch.no_grad()
def perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.1, gain_scale: float = 0.01) -> None:
    """Add seeded noise to every parameter so zero-initialised layers stop being trivial.
    ZeroConv / LinearZeros gains are exp(3 * logs), so their `logs` get less."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        s = gain_scale if name.endswith("logs") else scale
        p.add_(s * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def random_input(case: Case, channels: int, batch: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return case.sample((batch, *case.shape(channels)), gen)


def build(case: Case, channels: int = CHANNELS, seed: int = 0) -> Bijection:
    """The layer with every ActNorm initialised on a random (non-standard) batch, then perturbed."""
    torch.manual_seed(seed)
    layer = case.make(channels, seed)
    init_batch = 2.0 * random_input(case, channels, 16, seed=100 + seed) + 0.5
    data_dependent_init(layer, layer, init_batch)
    assert is_initialized(layer)
    perturb(layer, seed)
    return layer


def _max_err(a: Tensor, b: Tensor) -> float:
    return (a - b).abs().max().item()


# --------------------------------------------------------------------------- localised flows
# Localised generative flows: the indexed affine G(x; u) = (x + t(u)) exp(s(u)) for a fixed u
# (seeded per build, shared by the batch); flat (vector u) and image (per-pixel u, ResNet in eval mode)
from flowforge.bijections.conditional import FixedIndex, IndexedAffine  # noqa: E402  (near its cases)


def _fixed_u(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(300 + seed))


CASES += [
    Case(
        "indexed-affine-flat",
        lambda c, s: FixedIndex(IndexedAffine((4 * c,), MLP(3, 8 * c, [8], "tanh")), _fixed_u((3,), s)),
        flat=True,
        bad_in=lambda c: (4 * c + 1,),
        bad_out=lambda c: (4 * c + 1,),
        expected=lambda c: f"(B, {4 * c})",
    ),
    Case(
        "indexed-affine-image",
        lambda c, s: FixedIndex(IndexedAffine((c, SIDE, SIDE), ResNet(1, 2 * c, hidden=8, blocks=1)),
                                _fixed_u((1, SIDE, SIDE), s)).eval(),
        eval_mode=True,
        expected=lambda c: f"(B, {c}, {SIDE}, {SIDE})",
    ),
]


# --------------------------------------------------------------------------- VAE-flow decoder
CASES += [  # vae-flow: the additive Glow layer of Morrow & Chiu (no split), plain and squeezed for 1 channel
    # two steps of float32 convolutions: batch-size-dependent summation order reaches ~2e-5
    Case("vae-flow-glow-layer", lambda c, s: glow_layer(c, depth=2, hidden=HIDDEN, permutation="conv1x1", seed=s),
         atol=5e-5),
    Case(
        "vae-flow-glow-layer-squeezed",
        lambda c, s: glow_layer(1, depth=2, hidden=HIDDEN, permutation="conv1x1-lu", squeeze=True, seed=s),
        fixed_shape=(1, SIDE, SIDE),
        atol=5e-5,
        bad_in=lambda c: (1, SIDE - 1, SIDE),
        bad_out=lambda c: (1, SIDE - 1, SIDE),
        expected=lambda c: "(B, C, H, W) with even H and W",
    ),
]


# --------------------------------------------------------------------------- contract


@parametrize_cases
def test_inverse_of_forward_is_identity(case):
    layer = build(case)
    x = random_input(case, CHANNELS, BATCH, seed=1)
    with torch.no_grad():
        z, ld = layer(x)
        x_back, _ = layer.inverse(z)
    assert ld.shape == (BATCH,)
    assert ld.dtype == torch.float32
    assert not torch.allclose(z.reshape(x.shape), x, atol=1e-3), "the layer is the identity: a vacuous test"
    assert x_back.shape == x.shape
    assert _max_err(x_back, x) < case.atol


def _single_example_logabsdet(fn, v: Tensor) -> Tensor:
    """log|det| of the Jacobian of the flattened map of one example (fed as a batch of 1)."""
    shape = v.shape

    def flat_map(u: Tensor) -> Tensor:
        return fn(u.view(1, *shape))[0].flatten()

    jac = jacobian(flat_map, v.flatten())
    assert jac.shape[0] == jac.shape[1] == v.numel()
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert sign != 0
    return logabsdet


@parametrize_cases
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_logdet_matches_autograd_jacobian_float64(case, direction):
    layer = build(case, channels=JAC_CHANNELS).double()
    x = random_input(case, JAC_CHANNELS, 2, seed=2).double()
    if direction == "forward":
        fn, inputs = layer.forward, x
        with torch.no_grad():
            out, logdet = fn(inputs)
        if case.batch_statistics:
            # the per-example map given the batch's statistics: it must reproduce the forward
            fn = case.frozen_forward(layer)
            with torch.no_grad():
                frozen_out, frozen_logdet = fn(inputs)
            torch.testing.assert_close(frozen_out, out, rtol=0, atol=0)
            torch.testing.assert_close(frozen_logdet, logdet, rtol=0, atol=0)
    else:
        with torch.no_grad():
            inputs = layer(x)[0]  # in training mode the inverse reuses this batch's statistics
        fn = layer.inverse
        with torch.no_grad():
            _, logdet = fn(inputs)
    assert logdet.dtype == torch.float64
    for i in range(inputs.shape[0]):
        expected = _single_example_logabsdet(fn, inputs[i])
        assert abs(logdet[i].item() - expected.item()) < 1e-8, (i, logdet[i].item(), expected.item())


@parametrize_cases
def test_forward_and_inverse_logdets_sum_to_zero(case):
    layer = build(case)
    x = random_input(case, CHANNELS, BATCH, seed=3)
    with torch.no_grad():
        z, ld_forward = layer(x)
        _, ld_inverse = layer.inverse(z)
    assert (ld_forward + ld_inverse).abs().max().item() < case.atol


@parametrize_cases
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_gradients_reach_every_parameter(case, direction):
    layer = build(case)
    x = random_input(case, CHANNELS, BATCH, seed=4)
    if direction == "inverse":
        with torch.no_grad():
            x = layer(x)[0]
    x.requires_grad_(True)
    out, logdet = getattr(layer, direction)(x)
    loss = 0.5 * (out**2).sum() - logdet.sum()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    params = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]
    for name, p in params:
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
    if params:
        total = torch.sqrt(sum((p.grad**2).sum() for _, p in params))
        assert total > 0


@parametrize_cases
def test_batch_independence(case):
    if case.batch_statistics:
        pytest.skip("normalises with the batch's statistics by design (frozen-statistics Jacobian test)")
    layer = build(case)
    x = random_input(case, CHANNELS, BATCH, seed=5)
    with torch.no_grad():
        z, ld = layer(x)
        x_back, ld_inv = layer.inverse(z)
        for i in range(BATCH):
            z_i, ld_i = layer(x[i : i + 1])
            x_i, ld_inv_i = layer.inverse(z[i : i + 1])
            # float32 convolutions may sum in another order for another batch size
            for a, b in ((z_i[0], z[i]), (ld_i[0], ld[i]), (x_i[0], x_back[i]), (ld_inv_i[0], ld_inv[i])):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=case.atol)


@parametrize_cases
def test_eval_equals_train(case):
    """Batch-norm layers differ between modes by design (tests/test_autoregressive.py checks
    each mode against its definition): for them only grad mode must not matter."""
    layer = build(case)
    x = random_input(case, CHANNELS, BATCH, seed=6)
    results = []
    modes = ("train", "eval", "eval-no-grad")
    if case.eval_mode or case.batch_statistics:
        modes = modes[1:]
    for mode in modes:
        layer.train(mode == "train")
        with torch.set_grad_enabled(mode != "eval-no-grad"):
            z, ld = layer(x)
            x_back, ld_inv = layer.inverse(z)
        results.append([t.detach() for t in (z, ld, x_back, ld_inv)])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@parametrize_cases
def test_state_dict_round_trip(case):
    layer = build(case, seed=0)
    torch.manual_seed(123)
    fresh = case.make(CHANNELS, 7)  # another seed: different permutation and init before loading
    fresh.load_state_dict(layer.state_dict())
    assert is_initialized(fresh)
    x = random_input(case, CHANNELS, BATCH, seed=7)
    for module in (layer, fresh):
        module.eval()
    with torch.no_grad():
        z, ld = layer(x)
        z2, ld2 = fresh(x)
        x_back, ld_inv = layer.inverse(z)
        x_back2, ld_inv2 = fresh.inverse(z)
    for a, b in ((z, z2), (ld, ld2), (x_back, x_back2), (ld_inv, ld_inv2)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@parametrize_cases
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_bad_shape_raises_shape_error(case, direction):
    layer = build(case)
    bad = torch.zeros(2, *(case.bad_in if direction == "forward" else case.bad_out)(CHANNELS))
    with pytest.raises(ShapeError) as info:
        getattr(layer, direction)(bad)
    message = str(info.value)
    expected = case.expected_out if direction == "inverse" and case.expected_out else case.expected
    assert expected(CHANNELS) in message
    assert str(tuple(bad.shape)) in message


# --------------------------------------------------------------------------- ActNorm


def test_actnorm_init_normalises_and_survives_state_dict():
    x = 3.0 * torch.randn(64, 3, 4, 4) - 2.0
    layer = ActNorm(3)
    assert not is_initialized(layer)
    assert data_dependent_init(layer, layer, x) == 1
    with torch.no_grad():
        y, _ = layer(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), rtol=0, atol=1e-4)
    assert data_dependent_init(layer, layer, torch.randn(8, 3, 4, 4)) == 0  # runs once

    state = layer.state_dict()
    assert bool(state["initialized"])
    fresh = ActNorm(3)
    fresh.load_state_dict(state)
    assert bool(fresh.initialized)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    assert data_dependent_init(fresh, fresh, 5.0 * torch.randn(16, 3, 4, 4)) == 0
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, before[k]), k
    new = torch.randn(4, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(fresh(new)[0], layer(new)[0], rtol=0, atol=0)


def test_actnorm_initialises_only_under_data_dependent_init():
    layer = ActNorm(2)
    x = 4.0 * torch.randn(8, 2) + 1.0
    with torch.no_grad():
        y, ld = layer(x)
    assert not is_initialized(layer)
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    torch.testing.assert_close(ld, torch.zeros(8), rtol=0, atol=0)


# --------------------------------------------------------------------------- 1x1 convolutions


def test_lu_conv_factors_are_triangular_and_reconstruct_weight():
    conv = InvertibleConv1x1LU(5, seed=3)
    perturb(conv, seed=1, scale=0.3)  # noise lands in the masked-out entries too
    with torch.no_grad():
        p, lower, upper = conv._factors64()
        weight = conv._weight64()
    eye = torch.eye(5, dtype=torch.float64)
    # P is a permutation matrix
    assert torch.equal(p.abs().sum(0), torch.ones(5, dtype=torch.float64))
    assert torch.equal(p @ p.T, eye)
    # L unit lower triangular
    assert torch.equal(torch.diagonal(lower), torch.ones(5, dtype=torch.float64))
    assert torch.equal(torch.triu(lower, 1), torch.zeros(5, 5, dtype=torch.float64))
    # U upper triangular: the learned part strictly upper, its diagonal sign_s * exp(log_s)
    assert torch.equal(torch.tril(upper, -1), torch.zeros(5, 5, dtype=torch.float64))
    torch.testing.assert_close(
        torch.diagonal(upper), conv.sign_s.double() * conv.log_s.double().exp(), rtol=0, atol=0
    )
    torch.testing.assert_close(weight, p @ lower @ upper, rtol=0, atol=0)
    # log|det W| = sum(log_s), and the layer applies W per position
    torch.testing.assert_close(torch.linalg.slogdet(weight)[1], conv.log_s.double().sum(), rtol=0, atol=1e-12)
    x = torch.randn(3, 5, 2, 2, dtype=torch.float64)
    conv = conv.double()
    with torch.no_grad():
        y, ld = conv(x)
    torch.testing.assert_close(y, torch.einsum("ij,bjhw->bihw", weight, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(ld, (4 * conv.log_s.sum()).expand(3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", [InvertibleConv1x1, InvertibleConv1x1LU], ids=lambda c: c.__name__)
def test_conv1x1_inverse_cache(cls):
    conv = cls(4, seed=2)
    perturb(conv, seed=2)
    x = torch.randn(3, 4, 4, 4)
    conv.train()
    assert conv.inverse_weight() is not conv.inverse_weight()  # never cached while training
    conv.eval()
    with torch.no_grad():
        w1 = conv.inverse_weight()
        w2 = conv.inverse_weight()
        assert w1 is w2
        z, _ = conv(x)
        assert _max_err(conv.inverse(z)[0], x) < 1e-5
        assert conv.inverse_weight() is w1

        for p in conv.parameters():
            p.add_(0.1 * torch.randn_like(p))  # in place: bumps the version the cache is keyed on
        w3 = conv.inverse_weight()
        assert w3 is not w1
        assert not torch.allclose(w3, w1)
        torch.testing.assert_close(w3 @ conv._weight64(), torch.eye(4, dtype=torch.float64), rtol=0, atol=1e-12)
        z, _ = conv(x)
        assert _max_err(conv.inverse(z)[0], x) < 1e-5

        # loading a state dict (checkpoint, EMA swap) also invalidates the cache
        other = cls(4, seed=9)
        perturb(other, seed=9)
        conv.load_state_dict(other.state_dict())
        torch.testing.assert_close(conv.inverse_weight(), torch.linalg.inv(other._weight64()), rtol=0, atol=1e-12)
        z, _ = conv(x)
        assert _max_err(conv.inverse(z)[0], x) < 1e-5
    with torch.enable_grad():
        assert conv.inverse_weight() is not conv.inverse_weight()  # not cached when grads are on


# --------------------------------------------------------------------------- coupling structure


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_coupling_jacobian_structure(coupling):
    """x_a passes through unchanged and y_b depends on x_b only elementwise: the Jacobian is
    [[I, 0], [*, D]] with D diagonal, zero where the mask says."""
    c = 2
    layer = (AffineCoupling(c, _net()) if coupling == "affine" else AdditiveCoupling(c, _net()))
    perturb(layer)
    layer = layer.double()
    x = torch.randn(1, c, SIDE, SIDE, dtype=torch.float64)
    jac = jacobian(lambda u: layer(u.view_as(x))[0].flatten(), x.flatten())
    n = SIDE * SIDE  # dimensions per channel; channel 0 is x_a, channel 1 is x_b
    torch.testing.assert_close(jac[:n, :n], torch.eye(n, dtype=torch.float64), rtol=0, atol=0)
    assert torch.count_nonzero(jac[:n, n:]) == 0
    block = jac[n:, n:]
    assert torch.count_nonzero(block - torch.diag(torch.diagonal(block))) == 0
    assert torch.count_nonzero(jac[n:, :n]) > 0  # the network really acts
    if coupling == "additive":
        torch.testing.assert_close(block, torch.eye(n, dtype=torch.float64), rtol=0, atol=0)


def test_spatial_size_comes_from_the_shape_so_an_empty_batch_works():
    from flowforge.bijections.base import spatial_size

    assert spatial_size(torch.empty(0, 3, 4, 5)) == 20
    assert spatial_size(torch.empty(0, 7)) == 1
