"""The saved-tensor meter sees activation memory grow with depth under ordinary backprop and stay
flat under memory-saving backprop."""

from __future__ import annotations

import torch

from flowforge.bijections import Chain, data_dependent_init
from flowforge.bijections.memory_saving import run_chain
from flowforge.models.glow import flow_step
from flowforge.training.activation_memory import SavedTensorMeter, peak_memory


def test_meter_counts_saved_bytes_once_and_releases_them():
    w = torch.randn(64, 64, requires_grad=True)
    x = torch.randn(32, 64)
    with SavedTensorMeter(exclude=[w]) as meter:
        y = (x @ w).tanh()  # saves x (matmul) and y (tanh); w excluded
        assert meter.current == x.numel() * 4 + y.numel() * 4
        y.sum().backward()
        del y
    assert meter.current == 0 and meter.peak == 2 * 32 * 64 * 4


def _peak(depth: int, memory_saving: bool) -> int:
    torch.manual_seed(0)
    chain = Chain([flow_step(4, 8, "affine", "sigmoid", "conv1x1", seed=k) for k in range(depth)])
    x = torch.randn(4, 4, 4, 4)
    data_dependent_init(chain, chain, x)

    def step():
        z, logdet = run_chain(chain, x, memory_saving=memory_saving)
        (0.5 * z.pow(2).sum() - logdet.sum()).backward()

    return peak_memory(step, list(chain.parameters()))


def test_memory_saving_peak_is_independent_of_depth():
    assert _peak(2, True) == _peak(6, True)
    plain2, plain6 = _peak(2, False), _peak(6, False)
    assert plain6 > 2.5 * plain2 and plain2 > _peak(2, True)
