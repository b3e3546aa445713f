"""Memory-saving (reversible) backpropagation through a chain of exactly invertible layers.

RevNet-style backprop (Gomez et al. 2017; Behrmann et al. 2021 section 3.3 and the public code's
`LayerList.gradient_`, NOTES d.4): the forward pass keeps only the chain's output. Backward walks
the layers in reverse; for each it rebuilds the layer's input from its output with the layer's
inverse (no grad), recomputes the layer's forward under grad and back-propagates through that one
layer. Activation memory is then one layer's worth plus the output, independent of depth.

The result equals ordinary backprop when the inverses are exact; in floating point every rebuilt
input carries the inverse's error, and where the inverse explodes the gradient is wrong
(`flowforge.diagnostics.gradient_angle` measures by how much).

`checkpointed_forward` is the usual alternative (torch.utils.checkpoint per layer): it stores each
layer's input, so memory still grows with depth, but it needs no inverse and is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from flowforge.bijections.base import Bijection, Chain, Inverse


def leaf_layers(bijection: Bijection) -> list[Bijection]:
    """The chain's layers in forward order, nested Chains (and Inverses of Chains) flattened, so
    backward recomputes one elementary layer at a time."""
    if isinstance(bijection, Chain):
        return [leaf for layer in bijection.layers for leaf in leaf_layers(layer)]
    if isinstance(bijection, Inverse) and isinstance(bijection.bijection, Chain):
        return [Inverse(leaf) for leaf in reversed(leaf_layers(bijection.bijection))]
    return [bijection]


def _unique_parameters(layers: list[Bijection]) -> list[nn.Parameter]:
    seen, params = set(), []
    for layer in layers:
        for p in layer.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


class _ReversibleChain(torch.autograd.Function):
    """Inputs: (x, context, layers, *params); outputs (z, logabsdet). Saves only z."""

    @staticmethod
    def forward(ctx, x: Tensor, context: Tensor | None, layers: list[Bijection], *params: Tensor):
        with torch.no_grad():
            total = None
            for layer in layers:
                x, logdet = layer(x, context=context)
                total = logdet if total is None else total + logdet
        ctx.layers = layers
        ctx.params = params
        ctx.context = context
        ctx.save_for_backward(x)
        return x, total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z: Tensor, grad_logdet: Tensor | None):
        (y,) = ctx.saved_tensors
        if grad_z is None:
            grad_z = torch.zeros_like(y)
        context = ctx.context
        context_needs_grad = context is not None and ctx.needs_input_grad[1]
        index = {id(p): i for i, p in enumerate(ctx.params)}
        param_grads: list[Tensor | None] = [None] * len(ctx.params)
        grad_context = None
        for layer in reversed(ctx.layers):
            with torch.no_grad():
                x_in, _ = layer.inverse(y, context=context)
            with torch.enable_grad():
                x_in = x_in.detach().requires_grad_(True)
                ctx_in = context.detach().requires_grad_(True) if context_needs_grad else context
                y_re, logdet = layer(x_in, context=ctx_in)
                layer_params = [p for p in layer.parameters() if p.requires_grad]
                inputs = [x_in, *layer_params] + ([ctx_in] if context_needs_grad else [])
                outputs, grads_out = [y_re], [grad_z]
                if grad_logdet is not None and logdet.requires_grad:
                    outputs.append(logdet)
                    grads_out.append(grad_logdet)
                grads = torch.autograd.grad(outputs, inputs, grads_out, allow_unused=True)
            grad_z = grads[0] if grads[0] is not None else torch.zeros_like(x_in)
            for p, g in zip(layer_params, grads[1 : 1 + len(layer_params)]):
                if g is not None:
                    i = index[id(p)]
                    param_grads[i] = g if param_grads[i] is None else param_grads[i] + g
            if context_needs_grad and grads[-1] is not None:
                grad_context = grads[-1] if grad_context is None else grad_context + grads[-1]
            y = x_in.detach()
        return (grad_z, grad_context, None, *param_grads)


def memory_saving_forward(chain: Bijection, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`chain(x, context)` whose backward rebuilds each layer's input from its output (module
    docstring). Every layer must have an exact inverse (layers normalising with batch statistics in training
    mode do not: put them in eval mode). Under no_grad this is the plain forward."""
    layers = leaf_layers(chain)
    params = [p for p in _unique_parameters(layers) if p.requires_grad]
    if not torch.is_grad_enabled() or not (x.requires_grad or params or (context is not None and context.requires_grad)):
        return chain(x, context=context)
    return _ReversibleChain.apply(x, context, layers, *params)


class MemorySavingChain(Bijection):
    """A chain whose forward *and* inverse backprop by rebuilding activations (the inverse walks
    the chain's inverse layers; their 'inverse' is the layers' forward). Holds the chain itself,
    so parameters are shared with it."""

    def __init__(self, chain: Bijection):
        super().__init__()
        self.chain = chain

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return memory_saving_forward(self.chain, x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return memory_saving_forward(Inverse(self.chain), z, context)


@contextmanager
def memory_saving_attribute(module: nn.Module, name: str = "transform") -> Iterator[nn.Module]:
    """Within the block, `module.<name>` (a chain) is wrapped in `MemorySavingChain`, so code that
    calls it (a model's loss, its regulariser's forward and inverse maps) backprops without
    stored activations; restored on exit. The state dict is unchanged outside the block."""
    original = getattr(module, name)
    if not isinstance(original, Bijection):
        raise TypeError(f"{type(module).__name__}.{name} must be a Bijection, got {type(original).__name__}")
    setattr(module, name, MemorySavingChain(original))
    try:
        yield module
    finally:
        setattr(module, name, original)


def checkpointed_forward(chain: Bijection, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`chain(x, context)` with torch.utils.checkpoint around each top-level layer: stores each
    layer's input only and recomputes the layer in backward (exact; memory still O(depth))."""
    layers = list(chain.layers) if isinstance(chain, Chain) else [chain]
    if not torch.is_grad_enabled():
        return chain(x, context=context)
    total = None
    for layer in layers:
        x, logdet = checkpoint(layer, x, context, use_reentrant=False)
        total = logdet if total is None else total + logdet
    return x, total


def run_chain(chain: Bijection, x: Tensor, context: Tensor | None = None, memory_saving: bool = False,
              checkpointing: bool = False) -> tuple[Tensor, Tensor]:
    """The chain's forward with the chosen gradient scheme (reversible wins if both are set)."""
    if memory_saving:
        return memory_saving_forward(chain, x, context)
    if checkpointing:
        return checkpointed_forward(chain, x, context)
    return chain(x, context=context)


__all__ = ["MemorySavingChain", "checkpointed_forward", "leaf_layers", "memory_saving_attribute", "memory_saving_forward",
           "run_chain"]
