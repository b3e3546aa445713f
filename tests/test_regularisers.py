"""The FD and NF regularisers (flowforge.objectives.regularisers) against closed forms on linear maps."""

from __future__ import annotations

import pytest
import torch

from flowforge.errors import ShapeError
from flowforge.objectives.regularisers import (
    FD_EPSILON,
    due,
    finite_difference_penalty,
    finite_difference_terms,
    flow_nll_penalty,
    unit_directions,
)

D, B = 6, 5


def _linear_map(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.nn.Parameter(torch.randn(D, D, generator=gen, dtype=torch.float64) + 3 * torch.eye(D, dtype=torch.float64))

    def forward(x):
        return x.reshape(x.shape[0], -1) @ a.T

    def inverse(z):
        return torch.linalg.solve(a, z.T).T.reshape(-1, 2, D // 2)

    return a, forward, inverse


def test_unit_directions_have_unit_norm_per_example():
    x = torch.zeros(7, 3, 4, 4)
    d = unit_directions(x.shape, x, torch.Generator().manual_seed(1))
    assert d.shape == x.shape
    torch.testing.assert_close(d.reshape(7, -1).norm(dim=1), torch.ones(7))


def test_fd_terms_equal_closed_form_on_a_linear_map():
    a, forward, inverse = _linear_map()
    x = torch.randn(B, 2, D // 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    terms = finite_difference_terms(forward, inverse, x, generator=torch.Generator().manual_seed(3))
    # the same directions, drawn in the same order
    gen = torch.Generator().manual_seed(3)
    d = unit_directions(x.shape, x, gen).reshape(B, D)
    d_latent = unit_directions((B, D), x, gen)
    expected_fwd = FD_EPSILON * (d @ a.T).pow(2).sum()
    expected_inv = FD_EPSILON * torch.linalg.solve(a, d_latent.T).pow(2).sum()
    torch.testing.assert_close(terms["forward"], expected_fwd, rtol=1e-10, atol=0)
    torch.testing.assert_close(terms["inverse"], expected_inv, rtol=1e-10, atol=0)


def test_fd_penalty_weights_and_gradients_reach_the_map():
    a, forward, inverse = _linear_map()
    x = torch.randn(B, 2, D // 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    terms = finite_difference_terms(forward, inverse, x, generator=torch.Generator().manual_seed(3))
    penalty = finite_difference_penalty(forward, inverse, x, forward_weight=1e-4, inverse_weight=2e-4,
                                        generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(penalty, 1e-4 * terms["forward"] + 2e-4 * terms["inverse"])
    # the inverse term alone has a gradient on A (through F^-1 and through z = F(x))
    terms["inverse"].backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_fd_penalty_of_an_isometry_is_eps_per_direction():
    q, _ = torch.linalg.qr(torch.randn(D, D, dtype=torch.float64, generator=torch.Generator().manual_seed(4)))
    x = torch.randn(B, D, dtype=torch.float64)
    terms = finite_difference_terms(lambda v: v @ q.T, lambda z: z @ q, x)
    # ‖Q d‖ = ‖d‖ = 1 for every example: R = B * ε in both directions
    torch.testing.assert_close(terms["forward"], torch.tensor(B * FD_EPSILON, dtype=torch.float64))
    torch.testing.assert_close(terms["inverse"], torch.tensor(B * FD_EPSILON, dtype=torch.float64))


def test_fd_rejects_bad_maps_and_eps():
    x = torch.randn(B, D)
    with pytest.raises(ShapeError, match="flat latents"):
        finite_difference_terms(lambda v: v.unsqueeze(1), lambda z: z, x)
    with pytest.raises(ShapeError, match="data shape"):
        finite_difference_terms(lambda v: v, lambda z: z[:, :2], x)
    with pytest.raises(ValueError, match="eps"):
        finite_difference_terms(lambda v: v, lambda z: z, x, eps=0.0)


def test_flow_nll_penalty_is_coefficient_times_mean_nll():
    x = torch.randn(B, D)
    log_prob = lambda v: -0.5 * v.pow(2).sum(1)  # noqa: E731
    torch.testing.assert_close(flow_nll_penalty(log_prob, x, 1e-8), 1e-8 * 0.5 * x.pow(2).sum(1).mean())
    with pytest.raises(ShapeError, match="per-example"):
        flow_nll_penalty(lambda v: v, x, 1.0)


def test_nf_penalty_keeps_non_finite_values():
    x = torch.randn(B, D)
    value = flow_nll_penalty(lambda v: torch.full((v.shape[0],), float("-inf")), x, 1e-5)
    assert torch.isinf(value)


def test_due_every_k_iterations():
    assert [s for s in range(12) if due(s, 5)] == [0, 5, 10]
    assert not any(due(s, 0) for s in range(5))
