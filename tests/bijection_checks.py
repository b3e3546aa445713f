"""The bijection contract as reusable checks (the checks of tests/test_bijection_contract.py, for
flat (B, D) layers with an optional context vector, without that file's model imports).

A `LayerCase` builds a fresh layer; `build` then adds seeded noise to every parameter so
zero-initialised conditioners do not make the layer the identity and the checks vacuous. Inputs
are N(0, 2^2), so some fall outside a spline's [-3, 3] and reach its identity tails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor
from torch.autograd.functional import jacobian

from flowforge.bijections import Bijection
from flowforge.errors import ShapeError

BATCH = 4


@dataclass(frozen=True)
class LayerCase:
    """`make()` builds the layer for inputs of `shape` (without batch); `context_dim` > 0: it reads a context."""

    id: str
    make: Callable[[], Bijection]
    shape: tuple[int, ...]
    context_dim: int = 0
    passes_context: bool = False  # no conditioner (actnorm-like): the same map for every context
    noise: float = 0.2  # std of the seeded parameter noise
    input_std: float = 2.0
    atol: float = 1e-5  # float32 round trip, log-det sum, batch independence

    def __str__(self) -> str:
        return self.id


@torch.no_grad()
def perturb(module: torch.nn.Module, seed: int, scale: float) -> None:
    """Seeded noise on every parameter (masked-out MADE weights included)."""
    gen = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def build(case: LayerCase, seed: int = 0) -> Bijection:
    torch.manual_seed(seed)
    layer = case.make()
    perturb(layer, seed, case.noise)
    return layer


def inputs(case: LayerCase, batch: int, seed: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor | None]:
    """A batch of inputs and, for a conditional layer, of contexts."""
    gen = torch.Generator().manual_seed(seed)
    x = case.input_std * torch.randn(batch, *case.shape, generator=gen, dtype=dtype)
    context = torch.randn(batch, case.context_dim, generator=gen, dtype=dtype) if case.context_dim else None
    return x, context


def _sliced(context: Tensor | None, i: int) -> Tensor | None:
    return None if context is None else context[i : i + 1]


def check_round_trip(case: LayerCase) -> None:
    layer = build(case)
    x, context = inputs(case, BATCH, seed=1)
    with torch.no_grad():
        z, logdet = layer(x, context=context)
        x_back, _ = layer.inverse(z, context=context)
    assert logdet.shape == (BATCH,) and logdet.dtype == torch.float32
    assert z.shape == x.shape == x_back.shape
    assert not torch.allclose(z, x, atol=1e-3), "the layer is the identity: a vacuous test"
    assert (x_back - x).abs().max().item() < case.atol


def _single_example_logabsdet(fn: Callable[[Tensor], tuple[Tensor, Tensor]], v: Tensor) -> Tensor:
    jac = jacobian(lambda u: fn(u.view(1, *v.shape))[0].flatten(), v.flatten())
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert sign != 0
    return logabsdet


def check_logdet_matches_jacobian(case: LayerCase, direction: str) -> None:
    """log|det| equals slogdet of the autograd Jacobian, per example, to 1e-8 in float64."""
    layer = build(case).double()
    x, context = inputs(case, 3, seed=2, dtype=torch.float64)
    with torch.no_grad():
        points = x if direction == "forward" else layer(x, context=context)[0]
        _, logdet = getattr(layer, direction)(points, context=context)
    assert logdet.dtype == torch.float64
    for i in range(points.shape[0]):
        def fn(u: Tensor, i: int = i) -> tuple[Tensor, Tensor]:
            return getattr(layer, direction)(u, context=_sliced(context, i))

        expected = _single_example_logabsdet(fn, points[i])
        assert abs(logdet[i].item() - expected.item()) < 1e-8, (i, logdet[i].item(), expected.item())


def check_logdets_sum_to_zero(case: LayerCase) -> None:
    layer = build(case)
    x, context = inputs(case, BATCH, seed=3)
    with torch.no_grad():
        z, forward = layer(x, context=context)
        _, inverse = layer.inverse(z, context=context)
    assert (forward + inverse).abs().max().item() < case.atol


def check_gradients_reach_every_parameter(case: LayerCase, direction: str) -> None:
    """A loss with random weights on every output (an orthogonal layer leaves |z|^2 unchanged,
    so the usual 0.5 |z|^2 would give its parameters no gradient) and on the log-det."""
    layer = build(case)
    x, context = inputs(case, BATCH, seed=4)
    if direction == "inverse":
        with torch.no_grad():
            x = layer(x, context=context)[0]
    x.requires_grad_(True)
    out, logdet = getattr(layer, direction)(x, context=context)
    gen = torch.Generator().manual_seed(5)
    loss = (torch.randn(out.shape, generator=gen) * out).sum() + (torch.randn(BATCH, generator=gen) * logdet).sum()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in layer.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
        if name not in _fully_masked_weights(layer):
            assert p.grad.abs().sum() > 0, f"zero gradient in {name}"


def _fully_masked_weights(layer: torch.nn.Module) -> set[str]:
    """Weights of masked linear maps whose mask is all zero (a 1-D MADE's first layer: its hidden
    units see no input by construction), which get a zero gradient by design."""
    return {f"{name}.weight" for name, module in layer.named_modules()
            if isinstance(getattr(module, "mask", None), Tensor) and not module.mask.any()}


def check_batch_independence(case: LayerCase) -> None:
    layer = build(case)
    x, context = inputs(case, BATCH, seed=6)
    with torch.no_grad():
        z, logdet = layer(x, context=context)
        x_back, logdet_inverse = layer.inverse(z, context=context)
        for i in range(BATCH):
            z_i, logdet_i = layer(x[i : i + 1], context=_sliced(context, i))
            x_i, logdet_inverse_i = layer.inverse(z[i : i + 1], context=_sliced(context, i))
            for a, b in ((z_i[0], z[i]), (logdet_i[0], logdet[i]), (x_i[0], x_back[i]),
                         (logdet_inverse_i[0], logdet_inverse[i])):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=case.atol)


def check_state_dict_round_trip(case: LayerCase) -> None:
    layer = build(case, seed=0)
    torch.manual_seed(123)
    fresh = case.make()
    fresh.load_state_dict(layer.state_dict())
    x, context = inputs(case, BATCH, seed=7)
    with torch.no_grad():
        z, logdet = layer(x, context=context)
        z2, logdet2 = fresh(x, context=context)
        x_back, logdet_inverse = layer.inverse(z, context=context)
        x_back2, logdet_inverse2 = fresh.inverse(z, context=context)
    for a, b in ((z, z2), (logdet, logdet2), (x_back, x_back2), (logdet_inverse, logdet_inverse2)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def check_context_handling(case: LayerCase) -> None:
    """A conditional layer's output depends on its context and it refuses to run without one;
    an unconditional layer refuses a context instead of ignoring it, unless it has no conditioner
    at all (`passes_context`): then it is the same map with any context or none."""
    layer = build(case)
    x, context = inputs(case, BATCH, seed=8)
    with torch.no_grad():
        if case.context_dim:
            z, logdet = layer(x, context=context)
            z2, logdet2 = layer(x, context=context + 1.0)
            assert not torch.allclose(z, z2, atol=1e-4) and not torch.allclose(logdet, logdet2, atol=1e-4)
            x_back, _ = layer.inverse(z, context=context + 1.0)
            assert not torch.allclose(x_back, x, atol=1e-4)
            for direction in ("forward", "inverse"):
                with pytest.raises(ValueError):
                    getattr(layer, direction)(x)
        elif case.passes_context:
            for direction in ("forward", "inverse"):
                out, logdet = getattr(layer, direction)(x)
                out2, logdet2 = getattr(layer, direction)(x, context=torch.randn(BATCH, 3))
                torch.testing.assert_close(out, out2, rtol=0, atol=0)
                torch.testing.assert_close(logdet, logdet2, rtol=0, atol=0)
        else:
            for direction in ("forward", "inverse"):
                with pytest.raises(ValueError, match="context"):
                    getattr(layer, direction)(x, context=torch.zeros(BATCH, 3))


def check_bad_shape(case: LayerCase) -> None:
    layer = build(case)
    bad = torch.zeros(2, case.shape[0] + 1, *case.shape[1:])
    _, context = inputs(case, 2, seed=9)
    for direction in ("forward", "inverse"):
        with pytest.raises(ShapeError) as info:
            getattr(layer, direction)(bad, context=context)
        assert str(tuple(bad.shape)) in str(info.value)


CHECKS = {
    "round-trip": check_round_trip,
    "logdet-jacobian-forward": lambda case: check_logdet_matches_jacobian(case, "forward"),
    "logdet-jacobian-inverse": lambda case: check_logdet_matches_jacobian(case, "inverse"),
    "logdets-sum-to-zero": check_logdets_sum_to_zero,
    "gradients-forward": lambda case: check_gradients_reach_every_parameter(case, "forward"),
    "gradients-inverse": lambda case: check_gradients_reach_every_parameter(case, "inverse"),
    "batch-independence": check_batch_independence,
    "state-dict": check_state_dict_round_trip,
    "context": check_context_handling,
    "bad-shape": check_bad_shape,
}
"""Every contract check by name, for `pytest.mark.parametrize("check", CHECKS)`."""
