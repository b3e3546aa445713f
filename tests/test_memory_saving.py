"""Memory-saving (reversible) backprop equals autograd on exactly invertible float64 chains, and
keeps only the chain's output for backward."""

from __future__ import annotations

import pytest
import torch

from flowforge.bijections import Bijection, Chain, Inverse, Squeeze, data_dependent_init
from flowforge.bijections.memory_saving import checkpointed_forward, leaf_layers, memory_saving_forward
from flowforge.models.glow import flow_step

C, SIDE, B = 4, 4, 3


@torch.no_grad()
def _perturb(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        p.add_((0.01 if name.endswith("logs") else 0.05) * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _chain(dtype=torch.float64) -> Chain:
    torch.manual_seed(0)
    steps = [
        flow_step(C, 8, "affine", "sigmoid", "conv1x1-lu", seed=1),
        flow_step(C, 8, "additive", "sigmoid", "conv1x1", seed=2),
        Chain([flow_step(C, 8, "affine", "tanh-exp", "shuffle", seed=3),
               flow_step(C, 8, "affine", "sigmoid", "reverse", seed=4)]),
    ]
    chain = Chain(steps).to(dtype)
    data_dependent_init(chain, chain, 2 * torch.randn(16, C, SIDE, SIDE, dtype=dtype) + 0.5)
    _perturb(chain, seed=5)
    return chain


def _grads(run, chain, x):
    x = x.clone().requires_grad_(True)
    z, logdet = run(chain, x)
    gen = torch.Generator().manual_seed(7)
    weights = torch.randn(z.shape, generator=gen, dtype=z.dtype)
    loss = (z * weights).sum() + (logdet * torch.arange(1, B + 1, dtype=z.dtype)).sum() + z.pow(2).sum()
    params = list(chain.parameters())
    grads = torch.autograd.grad(loss, [x, *params], allow_unused=True)
    return loss.detach(), grads


def _plain(chain, x):
    return chain(x)


def test_leaf_layers_flatten_nested_chains():
    chain = _chain()
    assert len(leaf_layers(chain)) == 12  # 4 steps x (actnorm, permutation, coupling)
    inv = leaf_layers(Inverse(chain))
    assert all(isinstance(layer, Inverse) for layer in inv) and inv[0].bijection is leaf_layers(chain)[-1]


@pytest.mark.parametrize("run", [memory_saving_forward, checkpointed_forward], ids=["reversible", "checkpoint"])
def test_gradients_equal_autograd_in_float64(run):
    chain = _chain()
    x = torch.randn(B, C, SIDE, SIDE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    loss_ref, ref = _grads(_plain, chain, x)
    loss, got = _grads(run, chain, x)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=0)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert (g is None) == (r is None)
        if r is not None:
            torch.testing.assert_close(g, r, rtol=0, atol=1e-10)


def test_gradients_through_an_inverse_chain_and_a_squeeze():
    chain = Chain([Squeeze(), Inverse(_chain()[0])]).to(torch.float64)  # inverse direction as the forward
    x = torch.randn(B, 1, 2 * SIDE, 2 * SIDE, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    _, ref = _grads(_plain, chain, x)
    _, got = _grads(memory_saving_forward, chain, x)
    for g, r in zip(got, ref):
        if r is not None:
            torch.testing.assert_close(g, r, rtol=0, atol=1e-10)


def test_only_the_output_is_kept_for_backward():
    chain = _chain()
    x = torch.randn(B, C, SIDE, SIDE, dtype=torch.float64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        z, _ = memory_saving_forward(chain, x)
    assert saved == [z.shape]
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        chain(x)
    assert len(saved) > 12  # ordinary autograd keeps activations of every layer


def test_no_grad_is_the_plain_forward():
    chain = _chain()
    x = torch.randn(B, C, SIDE, SIDE, dtype=torch.float64)
    with torch.no_grad():
        z, ld = memory_saving_forward(chain, x)
        z_ref, ld_ref = chain(x)
    torch.testing.assert_close(z, z_ref, rtol=0, atol=0)
    torch.testing.assert_close(ld, ld_ref, rtol=0, atol=0)


@pytest.mark.parametrize("switch", ["memory_saving", "checkpoint_steps"])
def test_glow_switches_give_autograd_gradients_in_float64(switch):
    from flowforge.models import create

    torch.manual_seed(0)
    kw = dict(image_shape=(1, 8, 8), levels=2, depth=3, hidden=8, n_bits=5)
    model = create("glow", **kw).double()
    _perturb(model, seed=3)
    images = torch.randint(0, 256, (16, 1, 8, 8), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    model.initialize(images[:8])
    switched = create("glow", **kw, **{switch: True}).double()
    switched.load_state_dict(model.state_dict())

    def grads(m):
        loss = m.loss(images[8:], generator=torch.Generator().manual_seed(5))["loss"]
        return loss.detach(), torch.autograd.grad(loss, list(m.parameters()), allow_unused=True)

    loss_ref, ref = grads(model)
    loss, got = grads(switched)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=0)
    for g, r in zip(got, ref):
        assert (g is None) == (r is None)
        if r is not None:
            torch.testing.assert_close(g, r, rtol=0, atol=1e-10)


@pytest.mark.parametrize("regulariser", ["fd", "nf"])
def test_memory_saving_attribute_gives_exact_gradients_of_a_regularised_classifier(regulariser):
    from flowforge.bijections.memory_saving import MemorySavingChain, memory_saving_attribute
    from flowforge.models import create

    torch.manual_seed(0)
    model = create("inn-classifier", image_shape=(1, 8, 8), levels=1, depth=2, hidden=8, coupling="affine",
                   regulariser=regulariser, fd_every=1, fd_coefficient=0.5, nf_coefficient=0.5).double()
    _perturb(model.transform, seed=6)
    images = torch.randint(0, 256, (8, 1, 8, 8), generator=torch.Generator().manual_seed(7), dtype=torch.uint8)
    labels = torch.arange(8) % 10
    model.initialize(images)
    params = list(model.parameters())

    def grads():
        out = model.loss((images, labels), generator=torch.Generator().manual_seed(8), step=0)
        assert "penalty" in out
        return torch.autograd.grad(out["loss"], params, allow_unused=True)

    ref = grads()
    with memory_saving_attribute(model, "transform"):
        assert isinstance(model.transform, MemorySavingChain)
        got = grads()
    assert not isinstance(model.transform, MemorySavingChain)
    for g, r in zip(got, ref):
        if r is not None:
            torch.testing.assert_close(g, r, rtol=0, atol=1e-10)


class _ConditionalAffine(Bijection):
    """y = x * exp(a · ctx) + b · ctx: a conditional layer to test context gradients."""

    def __init__(self, dim: int, ctx_dim: int, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.a = torch.nn.Parameter(0.3 * torch.randn(ctx_dim, dim, generator=gen, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.randn(ctx_dim, dim, generator=gen, dtype=torch.float64))

    def forward(self, x, context=None):
        s = context @ self.a
        return x * s.exp() + context @ self.b, s.sum(1)

    def inverse(self, z, context=None):
        s = context @ self.a
        return (z - context @ self.b) * (-s).exp(), -s.sum(1)


def test_context_gradients_equal_autograd():
    chain = Chain([_ConditionalAffine(3, 2, seed=k) for k in range(3)])
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    ctx = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    inputs = [x, ctx, *chain.parameters()]

    def grads(run):
        z, logdet = run(chain, x, ctx)
        return torch.autograd.grad(z.pow(2).sum() + logdet.sum(), inputs)

    for g, r in zip(grads(memory_saving_forward), grads(lambda c, v, k: c(v, context=k))):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-10)
