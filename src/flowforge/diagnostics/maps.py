"""A model or bijection seen as one invertible map between flat tensors.

The diagnostics (reconstruction errors, Jacobian spectra, the invertibility attack) need the
whole data -> latent map F and its inverse as plain functions of a batch: F takes (B, ...) data to
a flat latent (B, D) and F^-1 takes (B, D) back to data of the original shape. For a multi-scale
model (Glow, RealNVP) the latent is every factored-out latent flattened and concatenated, in the
order `encode` returns them, so F is a bijection of R^D (Behrmann et al. 2021, section 3, treat the
flow this way); for flat models it is their `flow`; a bare Bijection is itself, flattened.

Every function here treats the examples of a batch independently only if the model does: put
models with batch statistics (BatchNormFlow) in eval mode first. Localised generative flows
(models/lgf.py) are refused: every pass draws a new index u, so they are not one map to diagnose.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.errors import ShapeError
from flowforge.objectives.elbo import localised_steps

Map = Callable[[Tensor], Tensor]


class _Shapes:
    """Per-example shapes of the latents, learnt from the first forward call (or a probe)."""

    def __init__(self, module: nn.Module, encode: Callable[[Tensor], list[Tensor]],
                 input_shape: Sequence[int] | None):
        self.module, self.encode = module, encode
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.latents: list[tuple[int, ...]] | None = None

    def record(self, latents: list[Tensor]) -> None:
        self.latents = [tuple(z.shape[1:]) for z in latents]

    @property
    def dim(self) -> int:
        return sum(math.prod(s) for s in self.known())

    def known(self) -> list[tuple[int, ...]]:
        if self.latents is None:
            self._probe()
        return self.latents

    @torch.no_grad()
    def _probe(self) -> None:
        """Learn the latent shapes from one forward pass of a zero batch (eval mode, restored after)."""
        if self.input_shape is None:
            raise ShapeError("the inverse map does not know the latent shapes yet: call the forward map once "
                             "first, or pass input_shape to invertible_map")
        p = next(self.module.parameters(), None)
        kwargs = {"device": p.device, "dtype": p.dtype} if p is not None else {}
        was_training = self.module.training
        self.module.eval()
        try:
            self.record(self.encode(torch.zeros(2, *self.input_shape, **kwargs)))
        finally:
            self.module.train(was_training)


def _flatten(latents: list[Tensor]) -> Tensor:
    return torch.cat([z.reshape(z.shape[0], -1) for z in latents], dim=1)


def _unflatten(z: Tensor, shapes: list[tuple[int, ...]]) -> list[Tensor]:
    sizes = [math.prod(s) for s in shapes]
    if z.dim() != 2 or z.shape[1] != sum(sizes):
        raise ShapeError(f"the inverse map expects flat latents (B, {sum(sizes)}), got {tuple(z.shape)}")
    return [part.reshape(z.shape[0], *s) for part, s in zip(z.split(sizes, dim=1), shapes)]


def invertible_map(model_or_bijection: nn.Module, context: Tensor | None = None,
                   input_shape: Sequence[int] | None = None) -> tuple[Map, Map]:
    """(forward, inverse): forward maps a batch (B, ...) to its flat latent (B, D), inverse maps
    (B, D) back exactly (up to the model's own numerical error, which is what the diagnostics
    measure).

    - a Flow (every model built on `flowforge.Flow`): its transform, whose output is flat for multi-scale flows;
    - any other FlowModel (Glow, RealNVP, ...): `encode`, every latent flattened and concatenated,
      and `decode`;
    - a bare Bijection: itself, its output flattened.

    The inverse learns the latent shapes from the forward's first call; before that it probes the
    model with a zero batch of `input_shape` (by default the model's `image_shape` or `(dim,)`).
    """
    obj = model_or_bijection
    if localised_steps(obj):
        raise TypeError(f"{type(obj).__name__} is stochastic (an index u is drawn in every pass, LGF paper §3): "
                        "decode(encode(x)) != x by design, so it has no invertible map to diagnose")
    if input_shape is None:
        if hasattr(obj, "image_shape"):
            input_shape = obj.image_shape
        elif isinstance(getattr(obj, "dim", None), int):
            input_shape = (obj.dim,)
    flow = getattr(obj, "transform", None)
    if not isinstance(obj, Bijection) and isinstance(flow, Bijection):
        obj = flow
    if isinstance(obj, Bijection):
        bijection = obj

        def encode(x: Tensor) -> list[Tensor]:
            return [bijection(x, context=context)[0]]

        def decode(latents: list[Tensor]) -> Tensor:
            return bijection.inverse(latents[0], context=context)[0]
    elif hasattr(obj, "encode") and hasattr(obj, "decode"):
        model = obj

        def encode(x: Tensor) -> list[Tensor]:
            return list(model.encode(x, context=context))

        def decode(latents: list[Tensor]) -> Tensor:
            return model.decode(latents, context=context)
    else:
        raise TypeError(f"invertible_map needs a FlowModel (encode/decode) or a Bijection, got {type(obj).__name__}")

    shapes = _Shapes(obj, encode, input_shape)

    def forward(x: Tensor) -> Tensor:
        latents = encode(x)
        shapes.record(latents)
        return _flatten(latents)

    def inverse(z: Tensor) -> Tensor:
        return decode(_unflatten(z, shapes.known()))

    return forward, inverse
