"""The public Glow code's "edge bias" padding (nets/edge_bias.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flowforge.bijections.glow_coupling_net import GlowCouplingNet
from flowforge.models.glow import Glow
from flowforge.nets.edge_bias import EdgeBias, border_indicator
from flowforge.nets.zero_init import ZeroConv2d


def _concatenated_border_conv(x, weight, edge_weight, pad):
    """The public code's way (`add_edge_padding`): zero-pad, append the border channel, VALID conv."""
    padded = F.pad(x, (pad, pad, pad, pad))
    border = border_indicator(x.shape[-2], x.shape[-1], pad, dtype=x.dtype).expand(len(x), -1, -1, -1)
    return F.conv2d(torch.cat([padded, border], dim=1), torch.cat([weight, edge_weight], dim=1))


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_edge_bias_equals_the_concatenated_border_channel(kernel_size):
    torch.manual_seed(0)
    pad = kernel_size // 2
    x = torch.randn(3, 4, 7, 6, dtype=torch.float64)
    weight = torch.randn(5, 4, kernel_size, kernel_size, dtype=torch.float64)
    edge = EdgeBias(5, kernel_size, std=1.0).double()
    conv = F.conv2d(x, weight, padding=pad)
    expected = _concatenated_border_conv(x, weight, edge.weight, pad)
    torch.testing.assert_close(conv + edge(conv), expected, rtol=0, atol=1e-12)
    # the map is a bias near the border only: inside, the border channel is out of the kernel's reach
    inner = edge(conv)[..., pad:-pad, pad:-pad]
    assert torch.equal(inner, torch.zeros_like(inner)) and edge(conv)[..., 0, 0].abs().sum() > 0


def test_border_indicator_marks_the_padding():
    border = border_indicator(2, 3, 1)[0, 0]
    assert border.shape == (4, 5)
    assert border[1:3, 1:4].sum() == 0 and border.sum() == 4 * 5 - 2 * 3


def test_edge_bias_needs_an_odd_kernel():
    with pytest.raises(ValueError, match="odd kernel size"):
        EdgeBias(4, kernel_size=2)


def test_zero_conv_with_edge_bias_starts_at_zero_and_learns_the_border():
    conv = ZeroConv2d(4, 6, edge_bias=True)
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(conv(x), torch.zeros(2, 6, 5, 5))
    conv(x).sum().backward()
    assert conv.edge.weight.grad.abs().sum() > 0  # zero-initialised but trainable


def test_coupling_net_gets_the_border_channel_on_its_3x3_convolutions_only():
    plain, edged = GlowCouplingNet(2, 4, hidden=8), GlowCouplingNet(2, 4, hidden=8, edge_bias=True)
    extra = {n: p.shape for n, p in edged.named_parameters() if n not in dict(plain.named_parameters())}
    assert extra == {"edge_in.weight": (8, 1, 3, 3), "conv_out.edge.weight": (4, 1, 3, 3)}
    assert 0.03 < float(edged.edge_in.weight.detach().std()) < 0.07  # drawn as conv_in's N(0, 0.05^2)


def test_glow_with_edge_bias_is_the_same_flow_contract():
    torch.manual_seed(0)
    model = Glow((1, 8, 8), levels=2, depth=2, hidden=8, edge_bias=True).double()
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    model.initialize(images, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, EdgeBias):
                m.weight.normal_(0, 0.1)
    x = model.prepare(images, torch.Generator().manual_seed(2)).double()
    with torch.no_grad():
        assert float((model.decode(model.encode(x)) - x).abs().max()) < 1e-10
    assert torch.isfinite(model.log_prob(x)).all()
    # two per coupling net, one in the split prior, one in the learned top prior
    assert sum(isinstance(m, EdgeBias) for m in model.modules()) == 2 * 2 * 2 + 1 + 1


def test_learned_top_prior_with_edge_bias_varies_near_the_border_only():
    from flowforge.distributions.glow_priors import TopPrior

    prior = TopPrior((4, 6, 6), edge_bias=True)
    assert TopPrior((4, 6, 6), learn=False, edge_bias=True).edge is None  # a fixed N(0, I) stays fixed
    mean, logs = prior.params(2, None)
    assert torch.equal(mean, torch.zeros(2, 4, 6, 6)) and torch.equal(logs, torch.zeros(2, 4, 6, 6))
    with torch.no_grad():
        prior.edge.weight.normal_()
    mean, _ = prior.params(2, None)
    assert mean[..., 1:-1, 1:-1].abs().sum() == 0 and mean[..., 0, :].abs().sum() > 0
