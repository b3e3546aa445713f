"""train.weight_decay reaches the optimiser (torch's L2 penalty, as the PyTorch reference code)."""

from __future__ import annotations

import pytest
import torch

from conftest import CONFIGS
from flowforge.errors import ConfigError
from flowforge.runs.config import RunConfig, load_config
from flowforge.runs.trainer import _optimizer


@pytest.mark.parametrize("optimizer", ["adam", "adamax"])
@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_weight_decay_shrinks_weights_without_a_gradient(optimizer, decay):
    cfg = RunConfig()
    cfg.train.optimizer, cfg.train.weight_decay, cfg.train.lr = optimizer, decay, 0.01
    layer = torch.nn.Linear(3, 3)
    before = layer.weight.detach().clone()
    opt = _optimizer(cfg, layer)
    assert all(group["weight_decay"] == decay for group in opt.param_groups)
    (0.0 * layer.weight.sum() + 0.0 * layer.bias.sum()).backward()  # zero gradient: only the penalty moves weights
    opt.step()
    if decay == 0.0:
        assert torch.equal(layer.weight, before)
    else:  # one Adam(ax) step moves every weight by lr towards zero
        torch.testing.assert_close(layer.weight.detach(), before - 0.01 * before.sign(), atol=1e-6, rtol=0)


def test_negative_weight_decay_is_refused():
    with pytest.raises(ConfigError, match="weight_decay"):
        load_config(str(CONFIGS / "tiny-mnist.toml"), ["train.weight_decay=-1e-5"])
