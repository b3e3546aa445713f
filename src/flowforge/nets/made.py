"""MADE: a masked MLP whose outputs are autoregressive in its inputs (Germain et al. 2015;
used as the MAF conditioner, Papamakarios et al. 2017 section 3.1).

Degrees are deterministic, as the LGF/CIF public code (NOTES b.4): input d has degree
``order[d]`` (a permutation of 1..D), hidden unit k of a layer of width H has degree
``k % (D - 1) + 1``, and every output head repeats the input degrees. A unit may see a unit of
the previous layer when ``deg_out >= deg_in`` (hidden layers) and an output may see a hidden unit
only when ``deg_out > deg_in`` (strict), so output i depends only on inputs of smaller degree.

Hidden units of degree 0 see no input but reach every output. They are used where an output
has nothing else to read:
  - D = 1 (the b.4 formula would divide by D - 1 = 0): all hidden degrees are 0. Without context
    the outputs are then constants (learned through the biases); with context they are
    functions of the context only.
  - with a context (``context_dim > 0``): hidden degrees are ``k % D`` (0..D-1) instead of
    ``k % (D - 1) + 1``, so the first output in the order (degree 1) also depends on the
    context; with b.4's formula it would see no hidden unit and be a bare bias (as in nflows).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowforge.errors import ShapeError

ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu, "elu": F.elu, "gelu": F.gelu}


class MaskedLinear(nn.Linear):
    """``y = x @ (W * mask).T + b`` with a fixed binary mask of shape (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        if mask.shape != (out_features, in_features):
            raise ShapeError(f"mask must be ({out_features}, {in_features}), got {tuple(mask.shape)}")
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def _input_degrees(dim: int, order: str | Tensor | Sequence[int]) -> Tensor:
    if isinstance(order, str):
        if order == "forward":
            return torch.arange(1, dim + 1)
        if order == "reverse":
            return torch.arange(dim, 0, -1)
        raise ValueError(f"order must be 'forward', 'reverse' or a permutation of 1..{dim}, got {order!r}")
    degrees = torch.as_tensor(order, dtype=torch.long).flatten()
    if degrees.numel() != dim or not torch.equal(torch.sort(degrees).values, torch.arange(1, dim + 1)):
        raise ValueError(f"an explicit order must be a permutation of 1..{dim}, got {degrees.tolist()}")
    return degrees.clone()


def _hidden_degrees(dim: int, width: int, with_context: bool) -> Tensor:
    low = 0 if with_context or dim == 1 else 1
    return torch.arange(width) % (dim - low) + low


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation.

    Maps ``x`` of shape (B, dim) to (B, out_multiplier * dim): head k is
    ``out[:, k * dim:(k + 1) * dim]``, and its entry i depends only on the inputs j with
    ``input_degrees[j] < input_degrees[i]`` (and on the context, which is unmasked).

    Args:
        dim: number of inputs D (>= 1).
        hidden: widths of the hidden layers (may be empty: one masked linear map).
        out_multiplier: number of output heads (2 for MAF: shift and log-scale).
        activation: one of ``ACTIVATIONS``.
        order: "forward" (degrees 1..D), "reverse" (D..1) or an explicit permutation of 1..D.
        context_dim: size of an optional context vector, mapped by an unmasked linear layer
            into the first hidden layer's pre-activation (into the output when hidden is empty).

    The output layer starts at zero (weights and bias), so a fresh MAF step is the identity.
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        out_multiplier: int = 2,
        activation: str = "tanh",
        order: str | Tensor | Sequence[int] = "forward",
        context_dim: int = 0,
    ):
        super().__init__()
        if dim < 1:
            raise ValueError(f"MADE needs dim >= 1, got {dim}")
        if out_multiplier < 1:
            raise ValueError(f"out_multiplier must be >= 1, got {out_multiplier}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        hidden = [int(h) for h in hidden]
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be positive, got {hidden}")
        self.dim = dim
        self.out_multiplier = out_multiplier
        self.context_dim = context_dim
        self.activation = activation
        self._act = ACTIVATIONS[activation]

        input_degrees = _input_degrees(dim, order)
        self.register_buffer("input_degrees", input_degrees)
        degrees = [input_degrees] + [_hidden_degrees(dim, h, context_dim > 0) for h in hidden]
        self.hidden_layers = nn.ModuleList(
            MaskedLinear(len(d_in), len(d_out), d_out[:, None] >= d_in[None, :])
            for d_in, d_out in zip(degrees[:-1], degrees[1:])
        )
        output_degrees = input_degrees.repeat(out_multiplier)
        self.output_layer = MaskedLinear(
            len(degrees[-1]), len(output_degrees), output_degrees[:, None] > degrees[-1][None, :]
        )
        nn.init.zeros_(self.output_layer.weight)
        nn.init.zeros_(self.output_layer.bias)
        first_width = hidden[0] if hidden else len(output_degrees)
        self.context_layer = nn.Linear(context_dim, first_width) if context_dim > 0 else None

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"MADE({self.dim}) expects (B, {self.dim}), got {tuple(x.shape)}")
        h = x
        for i, layer in enumerate(self.hidden_layers):
            h = layer(h)
            if i == 0:
                h = self._add_context(h, context)
            h = self._act(h)
        out = self.output_layer(h)
        return out if self.hidden_layers else self._add_context(out, context)

    def _add_context(self, h: Tensor, context: Tensor | None) -> Tensor:
        if self.context_layer is None:
            if context is not None:  # refused, not ignored (docs/conditional-flows.md)
                raise ValueError(f"MADE was built without a context (context_dim=0) but got one of shape "
                                 f"{tuple(context.shape)}")
            return h
        if context is None:
            raise ValueError(f"MADE was built with context_dim={self.context_dim} but got no context")
        if context.dim() != 2 or context.shape != (h.shape[0], self.context_dim):
            raise ShapeError(
                f"MADE context must be (B, {self.context_dim}) with B = {h.shape[0]}, got {tuple(context.shape)}"
            )
        return h + self.context_layer(context.to(h.dtype))
