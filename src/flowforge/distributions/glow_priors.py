"""The learned top prior of the multi-scale Glow (Glow section 3 and the public code's `prior`): a
learned Gaussian over the top latent, optionally conditioned on a class label or on a context
vector. The split priors of the factored-out halves are part of the transform
(bijections/multiscale.py)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowforge.bijections.context import context_vector
from flowforge.distributions.base import Distribution, refuse_context
from flowforge.distributions.gaussian import diag_gaussian_log_prob, diag_gaussian_sample
from flowforge.errors import ShapeError
from flowforge.nets.edge_bias import EdgeBias
from flowforge.nets.zero_init import LinearZeros


class TopPrior(Distribution):
    """N(mean, exp(logs)^2) over the top latent of shape (C, H, W).

    With `learn=True` mean and logs are learned per channel (zero init); with `num_classes > 0`
    a zero-initialised linear map of the one-hot label is added (Glow's `ycond`), and with
    `context_dim` D > 0 one of the context vector c, shape (B, D), in the same way: c shifts the
    mean and log-std of every channel (the label is the special case of a one-hot c). With `edge_bias`
    and `learn`, a learned zero-initialised map near the border is added too: the public code's
    learned top prior is a zero-padded 3x3 convolution of zeros with the border channel
    (nets/edge_bias.py), i.e. a constant per channel plus that map.

    A class-conditional prior given no labels is the equal-weight mixture over the classes:
    log_prob is log (1/K) sum_k p(z | k), and sample draws each label uniformly.
    """

    def __init__(self, shape: tuple[int, int, int], learn: bool = True, num_classes: int = 0,
                 edge_bias: bool = False, context_dim: int = 0):
        super().__init__(shape)
        if num_classes > 0 and context_dim > 0:
            raise ValueError("TopPrior takes a class label (num_classes) or a context vector (context_dim), not both")
        self.shape = self.event_shape
        self.num_classes, self.context_dim = num_classes, int(context_dim)
        self.uses_context = num_classes > 0 or self.context_dim > 0
        c = shape[0]
        self.base = nn.Parameter(torch.zeros(2 * c, 1, 1), requires_grad=learn)
        self.edge = EdgeBias(2 * c, std=0.0) if edge_bias and learn else None
        self.label_map = LinearZeros(num_classes, 2 * c) if num_classes > 0 else None
        self.context_map = LinearZeros(self.context_dim, 2 * c) if self.context_dim > 0 else None

    def params(self, batch: int, context: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.base.unsqueeze(0).expand(batch, -1, *self.shape[1:])
        if self.edge is not None:
            h = h + self.edge(h)
        if self.label_map is not None:
            if context is None:
                raise ValueError("this model has a class-conditional prior: pass labels as `context`")
            if context.shape != (batch,):
                raise ShapeError(f"labels must have shape ({batch},), got {tuple(context.shape)}")
            onehot = nn.functional.one_hot(context.long(), self.num_classes).to(h.dtype)
            h = h + self.label_map(onehot)[:, :, None, None]
        if self.context_map is not None:
            vector = context_vector(self, context, self.context_dim, batch)
            h = h + self.context_map(vector.to(h.dtype))[:, :, None, None]
        if not self.uses_context:
            refuse_context(self, context)
        c = self.shape[0]
        return h[:, :c], h[:, c:]

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        if self.label_map is not None and context is None:  # the mixture over the classes
            return torch.logsumexp(self.log_prob_per_class(z), dim=1) - math.log(self.num_classes)
        mean, logs = self.params(z.shape[0], context)
        return diag_gaussian_log_prob(z, mean.to(z.dtype), logs.to(z.dtype))

    def log_prob_per_class(self, z: Tensor) -> Tensor:
        """(B, num_classes): log p(z | k) for every class k."""
        if self.label_map is None:
            raise ValueError("log_prob_per_class needs a class-conditional prior (num_classes > 0)")
        labels = torch.arange(self.num_classes, device=z.device)
        return torch.stack([self.log_prob(z, k.expand(z.shape[0])) for k in labels], dim=1)

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        if self.label_map is not None and context is None:  # a uniformly drawn class per sample
            device = self.base.device if generator is None else generator.device
            context = torch.randint(self.num_classes, (n,), generator=generator, device=device)
        mean, logs = self.params(n, context)
        return diag_gaussian_sample(mean, logs, float(temperature), generator)
