"""A normalising flow: a bijection to a base density (the shape of nflows' and zuko's `Flow`).

    log p(x | c) = log p_base(f(x; c) | c) + log |det df/dx|,    x = f^{-1}(z; c), z ~ p_base(. | c)

`f` is any `Bijection` (data -> latent), the base any `flowforge.distributions.Distribution`.
`flow.distribution(context)` gives the same model as a `torch.distributions.Distribution`.
"""

from __future__ import annotations

import math
import types

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection
from flowforge.bijections.multiscale import MultiScale
from flowforge.distributions.base import Distribution


class Flow(nn.Module):
    """`Flow(transform, base)`; `event_shape` is the data's per-example shape (default: the base's)."""

    transform: Bijection
    base: Distribution

    def __init__(self, transform: Bijection | None = None, base: Distribution | None = None, event_shape=None):
        super().__init__()
        if (transform is None) != (base is None):
            raise TypeError("Flow needs both a transform and a base distribution")
        if transform is not None:  # model subclasses set them once their layers are built
            self.transform, self.base = transform, base
            self.event_shape = tuple(base.event_shape if event_shape is None else event_shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.log_prob(x, context)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(x | context) in nats, one value per example."""
        compiled = self.__dict__.get("_compiled_log_prob")
        if compiled is not None and torch.is_grad_enabled():
            return compiled(self, x, context)
        return self._log_prob(x, context)

    def _log_prob(self, x: Tensor, context: Tensor | None) -> Tensor:
        z, logdet = self.transform(x, context=context)
        return self.base.log_prob(z, self._base_context(context)) + logdet

    def compile_flow(self, mode: str | None = None) -> None:
        """Compile the density pass (transform, base and log-det sum; backward included) with
        torch.compile for training: passes with gradients (training steps) run the compiled graph,
        passes without (evaluation, any batch size) stay eager, so evaluation never recompiles. The
        mathematics is unchanged (float reassociation aside). The first compiled step pays the
        compilation (13-42 s cold on a CPU core for the 4-step MAF / NSF of benchmarks/peer_flows.py,
        about 1 s from torch's cache); after it, a training step of those flows is 1.9-3.2x faster
        than eager there (docs/results.md). Models whose training pass is not `log_prob` override or refuse this."""
        # compiled as a function of the flow, not as this flow's bound method: a copy of the flow
        # (deepcopy, EMA) then runs its own parameters through it (a graph of its own)
        self.__dict__["_compiled_log_prob"] = torch.compile(with_own_code(_density_pass), mode=mode)

    def _base_context(self, context: Tensor | None) -> Tensor | None:
        """The context goes to the base only if it uses one (the transform's layers may)."""
        return context if self.base.uses_context else None

    def rsample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        """n samples through which gradients reach the parameters (reparameterised base draws)."""
        z = self.base.sample(n, temperature, self._base_context(context), generator)
        return self.transform.inverse(z, context=context)[0]

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        """n samples; `temperature` scales the base's standard deviation (one value, or one per latent
        part for a multi-scale base)."""
        with torch.no_grad():
            return self.rsample(n, temperature, context, generator)

    def sample_and_log_prob(self, n: int, context: Tensor | None = None, generator=None) -> tuple[Tensor, Tensor]:
        """n reparameterised samples and their log-density, in one inverse pass (reverse-KL training)."""
        z, log_base = self.base.sample_and_log_prob(n, self._base_context(context), generator)
        x, logdet = self.transform.inverse(z, context=context)
        return x, log_base - logdet

    def encode(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        """Every latent: the factored-out parts and the last level's output of a multi-scale
        transform, else [f(x)]; decode(encode(x)) == x."""
        if isinstance(self.transform, MultiScale):
            return self.transform.latents(x, context)[0]
        return [self.transform(x, context=context)[0]]

    def decode(self, latents: list[Tensor], context: Tensor | None = None) -> Tensor:
        if isinstance(self.transform, MultiScale):
            return self.transform.inverse_latents(latents, context)[0]
        if len(latents) != 1:
            raise ValueError(f"decode needs 1 latent for this flow, got {len(latents)}")
        return self.transform.inverse(latents[0], context=context)[0]

    def distribution(self, context: Tensor | None = None) -> FlowDistribution:
        """This flow as a torch.distributions.Distribution (batch shape: one entry per context row)."""
        return FlowDistribution(self, context)


class FlowDistribution(torch.distributions.Distribution):
    """A `Flow` seen through torch.distributions: `log_prob`, `sample`, `rsample`, `event_shape`,
    `batch_shape` ((B,) for B context rows, () without context)."""

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, flow: Flow, context: Tensor | None = None):
        self.flow, self.context = flow, context
        batch_shape = torch.Size(()) if context is None else torch.Size(context.shape[:1])
        super().__init__(batch_shape, torch.Size(flow.event_shape), validate_args=False)

    def _contexts(self, repeats: int) -> Tensor | None:
        if self.context is None:
            return None
        return self.context.repeat(repeats, *([1] * (self.context.dim() - 1)))

    def log_prob(self, value: Tensor) -> Tensor:
        lead = value.shape[: value.dim() - len(self.event_shape)]
        if tuple(lead[len(lead) - len(self.batch_shape):]) != tuple(self.batch_shape):
            raise ValueError(f"value of shape {tuple(value.shape)} does not end in batch shape "
                             f"{tuple(self.batch_shape)} + event shape {tuple(self.event_shape)}")
        flat = value.reshape(-1, *self.event_shape)
        repeats = flat.shape[0] // max(1, math.prod(self.batch_shape))
        return self.flow.log_prob(flat, self._contexts(repeats)).reshape(lead)

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        n = math.prod(sample_shape) if sample_shape else 1
        total = n * max(1, math.prod(self.batch_shape))
        x = self.flow.rsample(total, context=self._contexts(n))
        return x.reshape(*sample_shape, *self.batch_shape, *self.event_shape)

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)


def _density_pass(flow: Flow, x: Tensor, context: Tensor | None) -> Tensor:
    """`Flow.log_prob`'s eager pass, as a function of the flow (what `Flow.compile_flow` compiles)."""
    return flow._log_prob(x, context)


def with_own_code(fn):
    """`fn` with a code object of its own, for one model's `torch.compile`: dynamo keeps compiled
    graphs, shape history and its recompile limit (8) per code object, so a module-level function
    compiled by every model of a process would share them (the ninth flow compiled in one
    benchmark process ran eagerly, and a second model's shapes would turn the first's dynamic)."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
