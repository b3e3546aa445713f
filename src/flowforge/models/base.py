"""The FlowModel interface shared by every assembled model (see DESIGN.md, Conventions)."""

from __future__ import annotations

from torch import Tensor, nn


class FlowModel(nn.Module):
    """An assembled density model.

    - `log_prob(x, context=None)`: log-density in nats per example, in the model's data space.
    - `sample(n, temperature=1.0, context=None)`: n samples in the model's data space.
    - `encode(x)` / `decode(latents)`: all latents (every split), decode(encode(x)) == x.
    - `loss(batch)`: a dict whose "loss" is minimised; the other entries are logged.
    - `prepare(batch)`: move a raw data batch into the model's data space (e.g. uint8 -> floats).
    """

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
