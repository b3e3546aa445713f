"""The FlowModel interface shared by every assembled model (see DESIGN.md, Conventions), and
the pieces shared by the image models."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from flowforge.bijections.actnorm import data_dependent_init
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
    """

    DATA_ARGS: tuple[str, ...] = ()
    CHOICES: dict[str, tuple[str, ...]] = {}
    # (regex, replacement) renames of state-dict keys written by earlier versions, applied in order
    # by `load_state_dict` (checkpoints of runs trained before the models were built on `Flow`)
    LEGACY_KEYS: tuple[tuple[str, str], ...] = ()
    # what `log_prob` (and so every figure from it) is: a key of evaluation.summary.LOG_PROB_KINDS
    log_prob_kind: str = "exact"

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

    def initialize_from_runs(self, load_run) -> None:
        """Before `initialize` on a fresh run: take weights from other runs the config names
        (`load_run`: run directory -> trained model, supplied by the application). Default: none."""

    def upgrade_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """`state` with the keys of earlier versions renamed (`LEGACY_KEYS`); current keys unchanged."""
        if not self.LEGACY_KEYS:
            return dict(state)
        current = self.state_dict().keys()  # once: per key it made loading quadratic in the key count
        if all(k in current for k in state):
            return dict(state)
        out = {}
        for key, value in state.items():
            for pattern, replacement in self.LEGACY_KEYS:
                key = re.sub(pattern, replacement, key)
            out[key] = value
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
    """An image model that is a `Flow`: the input is checked, the loss is the mean bits/dim."""

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._check_input(x)
        return super().log_prob(x, context)

    def encode(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        self._check_input(x)
        return super().encode(x, context)

    def loss(self, batch, generator=None) -> dict[str, Tensor]:
        """Mean bits/dim of the batch's images (one dequantisation draw)."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        bpd = self.bits_per_dim(images, generator=generator).mean()
        return {"loss": bpd, "bpd": bpd.detach()}
