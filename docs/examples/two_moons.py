"""Compose a flow from layers with ff.Flow, train it on two moons in a plain PyTorch loop, report test NLL."""
import os

import torch

import flowforge as ff
from flowforge.bijections import Chain, ReversePermutation, SplineCoupling
from flowforge.data.toy2d import load_toy_splits
from flowforge.nets.mlp import MLP

torch.manual_seed(0)
data = load_toy_splits("two-moons")  # 10,000 / 1,000 / 5,000 points
layers = []
for i in range(4):
    layers += [SplineCoupling(torch.tensor([1, 0]), lambda n_in, n_out: MLP(n_in, n_out, [64, 64], "relu")),
               ReversePermutation(2)]
flow = ff.Flow(Chain(layers), ff.distributions.StandardNormal((2,)))
optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
for step in range(int(os.environ.get("STEPS", 2000))):
    batch = data.train[torch.randint(len(data.train), (256,))]
    loss = -flow.log_prob(batch).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
with torch.no_grad():
    nll = -flow.log_prob(data.test)
print(f"test NLL {nll.mean():.3f} ± {nll.std() / len(nll) ** 0.5:.3f} nats ({int(torch.isfinite(nll).sum())} finite)")
