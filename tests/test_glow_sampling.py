"""Glow sampling (models/glow.py): the noise order, and the compiled sampling pass."""

from __future__ import annotations

import pytest
import torch

from flowforge.bijections.permutations import _CachedInverse
from flowforge.models.glow import Glow


def _glow(permutation: str = "conv1x1-lu") -> Glow:
    torch.manual_seed(0)
    model = Glow((1, 8, 8), levels=2, depth=2, hidden=8, permutation=permutation)
    model.initialize(torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8))
    with torch.no_grad():  # every parameter away from its (partly zero) initial value
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def test_sample_draws_the_prior_noise_in_the_order_it_always_did():
    model = _glow()
    temps = [0.6, 0.9]  # first split, top
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # the sampling of earlier versions: each prior draws its noise when reached
        top = model.top_prior.sample(5, temps[-1], None, gen)
        kept = model.transform.levels[1].inverse(top)[0]
        mean, logs = model.transform.splits[0].prior.params(kept)
        split = mean + logs.exp() * (temps[0] * torch.randn(mean.shape, generator=gen))
        expected = model.transform.levels[0].inverse(torch.cat([kept, split], dim=1))[0]
        got = model.sample(5, temps, generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, expected)


@pytest.mark.parametrize("permutation", ["conv1x1-lu", "conv1x1"])
def test_compiled_sampling_gives_the_eager_samples_and_follows_weight_updates(permutation, monkeypatch):
    model = _glow(permutation)
    model.compile_sampling()

    def both(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        compiled = model.sample(6, 0.8, generator=torch.Generator().manual_seed(seed))
        with monkeypatch.context() as m:
            m.setattr(model, "_compiled_sampling", None)
            eager = model.sample(6, 0.8, generator=torch.Generator().manual_seed(seed))
        return compiled, eager

    with torch.no_grad():
        compiled, eager = both(1)
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
        assert eager.std() > 0.01
        # an optimizer-like in-place update of every 1x1 convolution: the cached inverses must follow
        for layer in model.modules():
            if isinstance(layer, _CachedInverse):
                for p in layer.parameters():
                    p.add_(torch.randn_like(p) * 0.05)
        compiled, eager = both(2)
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


def test_compiled_sampling_is_used_only_in_eval_mode_without_gradients(monkeypatch):
    model = _glow()
    calls = []
    model._compiled_sampling = lambda z: calls.append(1) or model.transform.inverse(z)[0]
    model.train()
    with torch.no_grad():
        model.sample(2)
    model.eval()
    model.sample(2)  # gradients enabled
    assert calls == []
    with torch.no_grad():
        model.sample(2)
    assert calls == [1]
