"""Glow's coupling network (bijections/glow_coupling_net.py): the actnorms folded into the convolutions give the
network of the paper, values and gradients."""

from __future__ import annotations

import pytest
import torch

from flowforge.bijections.actnorm import data_dependent_init
from flowforge.bijections.glow_coupling_net import GlowCouplingNet


@pytest.mark.parametrize("edge_bias", [False, True])
def test_folded_actnorms_give_the_unfolded_network_values_and_gradients(edge_bias):
    torch.manual_seed(0)
    net = GlowCouplingNet(3, 6, hidden=8, edge_bias=edge_bias).double()
    with torch.no_grad():
        for p in net.parameters():  # every parameter away from its (partly zero) initial value
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(4, 3, 5, 6, dtype=torch.float64)
    folded = net(x)
    grads = torch.autograd.grad(folded.square().sum(), list(net.parameters()))
    unfolded = net._layers_unfolded(x)
    reference = torch.autograd.grad(unfolded.square().sum(), list(net.parameters()))
    torch.testing.assert_close(folded, unfolded, rtol=1e-12, atol=1e-12)
    for (name, _), g, r in zip(net.named_parameters(), grads, reference):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12, msg=name)
    assert folded.abs().max() > 0.1  # not trivially zero


def test_actnorm_initialisation_sees_the_convolution_outputs():
    torch.manual_seed(0)
    net = GlowCouplingNet(2, 4, hidden=8)
    x = torch.randn(64, 2, 6, 6) * 3 + 1
    data_dependent_init(net, net, x)
    h = net.conv_in(x)
    after = net.norm_in(h)
    # the data-dependent init made the first actnorm's output zero-mean, unit-variance per channel
    torch.testing.assert_close(after.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(after.std(dim=(0, 2, 3), unbiased=False), torch.ones(8), atol=1e-4, rtol=0)
