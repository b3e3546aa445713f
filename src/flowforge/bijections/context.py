"""A context vector c of `context_dim` values per example, as conditioners read it (the context
rule: bijections/base.py, docs/conditional-flows.md).

`context_vector` checks c against what its owner was built for: refused when `context_dim` is 0
(`refuse_context`), required and of shape (B, context_dim) otherwise (a (B,) context reads as one
column when context_dim is 1). `append_context` concatenates c to a conditioner's input along
dim 1, broadcast over the positions of an image input (B, C, H, W) as `context_dim` constant
extra channels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowforge.bijections.base import refuse_context
from flowforge.errors import ShapeError


def context_vector(owner: object, context: Tensor | None, context_dim: int, batch: int) -> Tensor | None:
    """`context` as (batch, context_dim), or None for an owner built without a context (module docstring)."""
    if context_dim == 0:
        refuse_context(owner, context)
        return None
    name = type(owner).__name__
    if context is None:
        raise ValueError(f"{name} was built with context_dim={context_dim}: pass a context of shape (B, {context_dim})")
    if context.dim() == 1 and context_dim == 1:
        context = context[:, None]
    if tuple(context.shape) != (batch, context_dim):
        raise ShapeError(f"{name} context must be ({batch}, {context_dim}), got {tuple(context.shape)}")
    return context


def append_context(x: Tensor, context: Tensor | None) -> Tensor:
    """x with the (B, D) context appended along dim 1 in x's dtype, broadcast over x's positions;
    x itself when there is no context."""
    if context is None:
        return x
    context = context.to(x.dtype)
    if x.dim() > 2:
        context = context.reshape(*context.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.cat([x, context], dim=1)
