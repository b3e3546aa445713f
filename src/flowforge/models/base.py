"""The FlowModel interface shared by every assembled model (see DESIGN.md, Conventions), and
the pieces shared by the image models."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from flowforge.bijections.actnorm import data_dependent_init
from flowforge.bijections.context import context_vector
from flowforge.data.quantisation import dequantise, to_model_space
from flowforge.errors import ShapeError
from flowforge.flow import Flow
from flowforge.objectives.bits_per_dim import bits_per_dim


class FlowModel(nn.Module):
    """An assembled density model.

    - `log_prob(x, context=None)`: log-density in nats per example, in the model's data space.
    - `sample(n, temperature=1.0, context=None)`: n samples in the model's data space.
    - `encode(x)` / `decode(latents)`: all latents (every split), decode(encode(x)) == x.
    - `loss(batch)`: a dict whose "loss" is minimised; the other entries are logged.
    - `initialize(x, context=None)`: data-dependent initialisation (actnorm), once.

    `log_prob_kind` says what `log_prob` computes: exact for the flows, a bound or an
    estimate for latent-variable models and residual flows (`evaluation.summary.LOG_PROB_KINDS`);
    evaluation reports carry it.

    Class attributes: `DATA_ARGS`, the constructor arguments that come from the data set rather
    than the config (e.g. `image_shape`, `dim`), and `CHOICES`, the allowed values of string
    options, so a config can be validated before the model is built.

    `context_dim` > 0: the model is conditioned on a context vector of that many values per
    example (docs/conditional-flows.md); `_context` checks one.
    """

    DATA_ARGS: tuple[str, ...] = ()
    CHOICES: dict[str, tuple[str, ...]] = {}
    # (regex, replacement) renames of state-dict keys written by earlier versions, applied in order
    # by `load_state_dict` (checkpoints of runs trained before the models were built on `Flow`)
    LEGACY_KEYS: tuple[tuple[str, str], ...] = ()
    # what `log_prob` (and so every figure from it) is: a key of evaluation.summary.LOG_PROB_KINDS
    log_prob_kind: str = "exact"
    context_dim: int = 0  # models that take a context vector set it in their constructor

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        raise NotImplementedError

    def encode(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        raise NotImplementedError

    def decode(self, latents: list[Tensor], context: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def loss(self, batch, generator=None) -> dict[str, Tensor]:
        raise NotImplementedError

    def initialize(self, x: Tensor, context: Tensor | None = None, generator=None) -> int:
        """Data-dependent initialisation of every actnorm by one pass over (x, context)."""
        return data_dependent_init(self, lambda b: self.loss(b, generator=generator), (x, context))

    def _context(self, context: Tensor | None, batch: int) -> Tensor | None:
        """The context as (batch, context_dim) floats; refused by a model built without a context
        vector, required by one built with it. A (B,) context is read as one column when context_dim == 1."""
        if self.context_dim == 0 and context is not None:
            name, shape = type(self).__name__, tuple(context.shape)
            if "context_dim" not in inspect.signature(type(self).__init__).parameters:
                raise ValueError(f"{name} takes no context, but got one of shape {shape}")
            raise ValueError(f"{name} was built without a context (context_dim=0) but got one of shape {shape}; "
                             "build it with context_dim > 0")
        context = context_vector(self, context, self.context_dim, batch)
        if context is not None and not torch.is_floating_point(context):
            context = context.float()
        return context

    def initialize_from_runs(self, load_run) -> None:
        """Before `initialize` on a fresh run: take weights from other runs the config names
        (`load_run`: run directory -> trained model, supplied by the application). Default: none."""

    def upgrade_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """`state` with the keys of earlier versions renamed (`LEGACY_KEYS`), then completed by
        each layer's own `upgrade_state(state, prefix)` (e.g. `MAFStep`); current keys unchanged."""
        out = dict(state)
        if self.LEGACY_KEYS:
            current = self.state_dict().keys()  # once: per key it made loading quadratic in the key count
            if not all(k in current for k in out):
                renamed = {}
                for key, value in out.items():
                    for pattern, replacement in self.LEGACY_KEYS:
                        key = re.sub(pattern, replacement, key)
                    renamed[key] = value
                out = renamed
        for name, module in self.named_modules():
            upgrade = getattr(module, "upgrade_state", None)
            if upgrade is not None and module is not self:
                upgrade(out, f"{name}.")
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return super().load_state_dict(self.upgrade_state_dict(state_dict), strict=strict, assign=assign)


class FlowOfLayers(Flow, FlowModel):
    """A model that is a `Flow` (transform + base, flow.py) with the FlowModel extras; subclasses
    build their layers and call `_set_flow`."""

    def _set_flow(self, transform, base, event_shape) -> None:
        self.transform, self.base = transform, base
        self.event_shape = tuple(event_shape)


class ImageModel(FlowModel):
    """Shared by models of n-bit images: the model space is k / 2^n - 0.5 plus uniform
    dequantisation noise, and bits/dim are against the discrete data."""

    DATA_ARGS = ("image_shape", "n_bits")

    def _set_image_shape(self, image_shape: Sequence[int], n_bits: int) -> None:
        self.image_shape = tuple(int(s) for s in image_shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {self.image_shape}")
        self.n_bits = n_bits

    @property
    def num_dims(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ShapeError(
                f"{type(self).__name__} expects images (B, {', '.join(map(str, self.image_shape))}), "
                f"got {tuple(x.shape)}"
            )

    def prepare(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """uint8 images -> dequantised model-space floats."""
        x = to_model_space(images, self.n_bits)
        return dequantise(x, self.n_bits, generator)

    def bits_per_dim(self, images: Tensor, context: Tensor | None = None, generator=None) -> Tensor:
        """Per-example bits/dim of uint8 images (one dequantisation draw)."""
        lp = self.log_prob(self.prepare(images, generator), context)
        return bits_per_dim(lp, self.num_dims, self.n_bits)


class ImageFlowModel(FlowOfLayers, ImageModel):
    """An image model that is a `Flow`: the input is checked, the loss is the mean bits/dim.

    With `context_dim` > 0 (Glow, RealNVP) a context vector is checked (`_context`) and reaches
    the transform's layers and the base, and a batch (images, context) trains p(x | c); a model
    built without one refuses a context."""

    def _layer_context(self, context: Tensor | None, batch: int) -> Tensor | None:
        """The context the transform's layers see (the class docstring)."""
        return self._context(context, batch)

    def batch_context(self, batch) -> Tensor | None:
        """The context of a training batch (images, context): its second tensor for a model with a
        context vector, else None (the labels of a labelled data set are no context vector)."""
        if self.context_dim and isinstance(batch, (tuple, list)) and len(batch) > 1:
            return batch[1]
        return None

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._check_input(x)
        return super().log_prob(x, self._layer_context(context, x.shape[0]))

    def rsample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        return super().rsample(n, temperature, self._layer_context(context, n), generator)

    def sample_and_log_prob(self, n: int, context: Tensor | None = None, generator=None) -> tuple[Tensor, Tensor]:
        return super().sample_and_log_prob(n, self._layer_context(context, n), generator)

    def encode(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        self._check_input(x)
        return super().encode(x, self._layer_context(context, x.shape[0]))

    def decode(self, latents: list[Tensor], context: Tensor | None = None) -> Tensor:
        return super().decode(latents, self._layer_context(context, latents[0].shape[0]) if latents else context)

    def loss(self, batch, generator=None) -> dict[str, Tensor]:
        """Mean bits/dim of the batch's images (one dequantisation draw), given the batch's
        context for a model with a context vector."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        bpd = self.bits_per_dim(images, self.batch_context(batch), generator=generator).mean()
        return {"loss": bpd, "bpd": bpd.detach()}
