"""Base of the models of flat (B, D) data: a `Flow` whose transform the subclass builds, over a
standard-normal base or, for a conditional model, a diagonal Gaussian of the context.

Conditioning (docs/conditional-flows.md): with ``context_dim > 0`` every conditioner of the
subclass's layers reads a context vector c of shape (B, context_dim) and, with ``base="auto"``
(the default) or ``"conditional-gaussian"``, so does the base, N(z; mean(c), diag(std(c))^2)
(`ConditionalDiagonalGaussian`): log p(x | c) = log p_base(f(x; c) | c) + log|det df/dx|.
``base="standard"`` keeps N(0, I) under conditional layers. A batch ``(x, c)`` trains p(x | c);
a batch ``(x,)`` or a bare tensor trains p(x).
"""

from __future__ import annotations

from torch import Tensor

from flowforge.bijections.base import Bijection
from flowforge.distributions.conditional_normal import ConditionalDiagonalGaussian
from flowforge.distributions.normal import StandardNormal
from flowforge.errors import ShapeError
from flowforge.models.base import FlowOfLayers

BASES = ("auto", "standard", "conditional-gaussian")
"""Values of a flat model's `base` option: "auto" is "conditional-gaussian" when context_dim > 0."""


class FlatFlowModel(FlowOfLayers):
    """log p(x | c) = log p_base(f(x; c) | c) + log|det df/dx| for the bijection f the subclass
    builds and passes to `_set_transform`; the loss is the mean NLL in nats."""

    DATA_ARGS = ("dim", "context_dim")  # the context's width comes from the data's context columns
    LEGACY_KEYS = ((r"^flow\.", "transform."),)
    CHOICES = {"base": BASES}
    # speed = "auto" may compile the density pass (`Flow.compile_flow`) of a long run: measured to
    # repay for MAF and NSF (flat RealNVP's couplings are the same kind of MLP pass); off in the
    # models whose training pass is not a plain density pass (ELBO, reverse KL) or loops
    auto_compile_flow = True

    def __init__(self, dim: int, context_dim: int = 0, base: str = "auto"):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if context_dim < 0:
            raise ValueError(f"context_dim must be >= 0, got {context_dim}")
        if base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {base!r}")
        if base == "conditional-gaussian" and context_dim == 0:
            raise ValueError('base="conditional-gaussian" needs context_dim > 0')
        self.dim, self.context_dim = dim, int(context_dim)
        self.base_kind = ("conditional-gaussian" if context_dim > 0 else "standard") if base == "auto" else base

    def _set_transform(self, transform: Bijection) -> None:
        if self.base_kind == "conditional-gaussian":
            base = ConditionalDiagonalGaussian((self.dim,), self.context_dim)
        else:
            base = StandardNormal((self.dim,))
        self._set_flow(transform, base, (self.dim,))

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"{type(self).__name__} expects (B, {self.dim}), got {tuple(x.shape)}")

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(x)
        return super().log_prob(x, self._context(context, x.shape[0]))

    def rsample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        return super().rsample(n, temperature, self._context(context, n), generator)

    def sample_and_log_prob(self, n: int, context: Tensor | None = None, generator=None) -> tuple[Tensor, Tensor]:
        return super().sample_and_log_prob(n, self._context(context, n), generator)

    def encode(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        self._check(x)
        return super().encode(x, self._context(context, x.shape[0]))

    def decode(self, latents: list[Tensor], context: Tensor | None = None) -> Tensor:
        return super().decode(latents, self._context(context, latents[0].shape[0]) if latents else context)

    def loss(self, batch, generator=None) -> dict[str, Tensor]:
        """Mean NLL of a batch: a tensor x, (x,), or (x, context) for a conditional model."""
        if isinstance(batch, (tuple, list)):
            x = batch[0]
            context = batch[1] if len(batch) > 1 else None  # an unconditional model refuses one
        else:
            x, context = batch, None
        nll = -self.log_prob(x, context).mean()
        return {"loss": nll, "nll": nll.detach()}
