import pytest
import torch

from flowforge.training.ema import EMA


def test_decay_ramps_up_to_its_ceiling():
    ema = EMA(torch.nn.Linear(2, 2), decay=0.999)
    assert ema.decay_at(0) == pytest.approx(0.1)
    assert ema.decay_at(90) == pytest.approx(0.91)
    assert ema.decay_at(10**6) == 0.999


def test_shadow_is_the_running_average_and_copies_buffers():
    model = torch.nn.BatchNorm1d(3)
    ema = EMA(model, decay=0.5)
    expected = model.weight.detach().clone()
    for step in range(20):
        with torch.no_grad():
            model.weight.add_(1.0)
            model.running_mean.add_(1.0)
        ema.update(model, step)
        d = ema.decay_at(step)
        expected = d * expected + (1 - d) * model.weight.detach()
    assert torch.allclose(ema.shadow.weight, expected)
    assert torch.equal(ema.shadow.running_mean, model.running_mean)
    assert not any(p.requires_grad for p in ema.shadow.parameters())


def test_zero_decay_copies_the_model():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.0)
    with torch.no_grad():
        model.weight.mul_(3)
    ema.update(model, 5)
    assert torch.equal(ema.shadow.weight, model.weight)
