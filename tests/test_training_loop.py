"""The library loop `flowforge.training.fit`: it lowers the NLL of a flow, skips (never applies) a
non-finite step, calls its hooks after every step and passes a context through."""

import torch

import flowforge as ff
from flowforge.bijections import ActNorm, Chain
from flowforge.training import EMA, fit


def _flow():
    return ff.Flow(Chain([ActNorm(2)]), ff.distributions.StandardNormal((2,)))


def test_fit_lowers_the_nll_and_calls_hooks_and_ema():
    torch.manual_seed(0)
    data = torch.randn(512, 2) * 3 + 1
    flow = _flow()
    with torch.no_grad():
        before = float(-flow.log_prob(data).mean())
    seen = []
    ema = EMA(flow, decay=0.9)
    records = fit(flow, [data[i:i + 64] for i in range(0, 512, 64)], torch.optim.Adam(flow.parameters(), lr=0.05),
                  steps=200, ema=ema, hooks=[lambda step, model, record: seen.append(step)], progress=False)
    with torch.no_grad():
        after = float(-flow.log_prob(data).mean())
    assert after < before - 1.0 and seen == list(range(1, 201)) and len(records) == 200
    assert not any(r["skipped"] for r in records)
    assert not torch.equal(ema.shadow.transform.layers[0].log_scale, flow.transform.layers[0].log_scale)


def test_a_non_finite_step_is_skipped_not_applied():
    flow = _flow()
    weights = {k: v.clone() for k, v in flow.state_dict().items()}
    bad = torch.full((8, 2), float("nan"))
    records = fit(flow, [bad], torch.optim.SGD(flow.parameters(), lr=0.1), steps=3, progress=False)
    assert all(r["skipped"] for r in records)
    assert all(torch.equal(weights[k], v) for k, v in flow.state_dict().items())


def test_a_context_reaches_the_flow():
    class Conditional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(()))
            self.contexts = []

        def log_prob(self, x, context=None):
            self.contexts.append(context)
            return -(x - self.weight * context).pow(2).sum(1)

    model = Conditional()
    x, c = torch.ones(4, 1), torch.ones(4, 1)
    fit(model, [(x, c)], torch.optim.SGD(model.parameters(), lr=0.1), steps=5, progress=False)
    assert all(ctx is c for ctx in model.contexts) and float(model.weight) > 0
