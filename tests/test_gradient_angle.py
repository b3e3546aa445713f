"""The gradient angle between memory-saving and true gradients."""

from __future__ import annotations

import math

import torch

from flowforge.bijections import Chain, data_dependent_init
from flowforge.diagnostics.gradient_angle import angle_degrees, chain_gradient_angle
from flowforge.models.glow import flow_step


def test_angle_degrees_known_values():
    a = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert angle_degrees(a, a) == 0.0
    assert math.isclose(angle_degrees(a, torch.tensor([1.0, 1.0], dtype=torch.float64)), 45.0, rel_tol=1e-12)
    assert math.isclose(angle_degrees(a, -a), 180.0)
    assert math.isnan(angle_degrees(a, torch.tensor([math.inf, 0.0], dtype=torch.float64)))
    assert math.isnan(angle_degrees(a, torch.zeros(2, dtype=torch.float64)))


def _chain(dtype, scale: float) -> Chain:
    torch.manual_seed(0)
    chain = Chain([flow_step(4, 8, "affine", "sigmoid", "conv1x1", seed=k) for k in range(3)]).to(dtype)
    data_dependent_init(chain, chain, torch.randn(16, 4, 4, 4, dtype=dtype))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in chain.named_parameters():
            p.add_((0.01 if name.endswith("logs") else scale) * torch.randn(p.shape, generator=gen, dtype=dtype))
    return chain


def _nll(z, logdet):
    return 0.5 * z.pow(2).sum() - logdet.sum()


def test_float64_angle_is_zero_and_float32_small_but_positive():
    x64 = torch.randn(8, 4, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    exact = chain_gradient_angle(_chain(torch.float64, 0.05), x64, _nll)
    assert exact["finite"] and exact["angle_deg"] < 1e-5 and exact["relative_error"] < 1e-10
    approx = chain_gradient_angle(_chain(torch.float32, 0.05), x64.float(), _nll)
    assert approx["finite"] and 0.0 <= approx["angle_deg"] < 1.0


def test_an_exploding_inverse_makes_the_angle_large_or_nan():
    chain = _chain(torch.float32, 0.05)
    # first coupling scale ~ sigmoid(-40): its tiny output is mixed with O(1) channels by the next
    # 1x1 conv, so float32 loses it and the inverse cannot rebuild it
    with torch.no_grad():
        conv = chain[0][2].net.conv_out
        conv.conv.bias[1::2] = -40.0 / math.exp(3 * float(conv.logs.mean()))
    x = torch.randn(8, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    result = chain_gradient_angle(chain, x, _nll)
    assert (not result["finite"]) or result["angle_deg"] > 1.0
