"""INN classifier (Behrmann et al. 2021, "Understanding and mitigating exploding inverses in
invertible neural networks", section 6 and supplement; public code `classification/`, see
NOTES-from-public-code.md d.2): a Glow-like invertible body without splits — per level a squeeze,
then K steps of actnorm -> permutation -> coupling (models/glow.py's `flow_step`) — and a
projection head batch-norm -> ReLU -> linear on the whole final latent, trained with
cross-entropy.

Optional regularisers (section 5, NOTES d.1/d.2):
- "fd": the bi-directional finite-difference penalty (eps = 0.1, per-example unit directions),
  times `fd_coefficient`, added on every `fd_every`-th training step;
- "nf": the normalising-flow penalty `nf_coefficient` * NLL of the body under a standard normal on
  the latent (a density on the non-dequantised inputs, as in the public code).

Inputs are n-bit images scaled to [-0.5, 0.5) and *not* dequantised (a classifier, not a density
model); reconstruction errors and Jacobians are measured in that space.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowforge.bijections import Chain, Squeeze
from flowforge.bijections.scale_functions import SCALE_FUNCTIONS
from flowforge.data.quantisation import to_model_space
from flowforge.distributions.normal import StandardNormal
from flowforge.models.base import ImageFlowModel
from flowforge.models.glow import COUPLINGS, PERMUTATIONS, flow_step
from flowforge.models.registry import register
from flowforge.objectives.regularisers import due, finite_difference_penalty, flow_nll_penalty

REGULARISERS = ("none", "fd", "nf")


def inn_body(image_shape: Sequence[int], levels: int, depth: int, hidden: int, coupling: str, scale: str,
             permutation: str, seed: int = 0) -> Chain:
    """The invertible body: `levels` x (squeeze -> `depth` Glow steps), no splits, so the latent
    has the input's dimension (C * 4^L, H / 2^L, W / 2^L)."""
    c, h, w = image_shape
    if h % 2**levels or w % 2**levels:
        raise ValueError(f"image size {h}x{w} cannot be squeezed {levels} times (needs H and W divisible by {2**levels})")
    layers = []
    for level in range(levels):
        c = 4 * c
        layers.append(Squeeze())
        layers += [flow_step(c, hidden, coupling, scale, permutation, seed + 1000 * level + k) for k in range(depth)]
    return Chain(layers)


@register("inn-classifier")
class INNClassifier(ImageFlowModel):
    LEGACY_KEYS = ((r"^flow\.", "transform."),)
    """Glow-like INN without splits + projection head over images of shape `image_shape`."""

    is_classifier = True  # trained on (images, labels) and selected on validation accuracy (runs/data_sources.py)

    CHOICES = {"coupling": COUPLINGS, "permutation": PERMUTATIONS, "scale": tuple(SCALE_FUNCTIONS),
               "regulariser": REGULARISERS}

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        levels: int = 2,
        depth: int = 4,
        hidden: int = 32,
        coupling: str = "additive",
        scale: str = "sigmoid",
        permutation: str = "conv1x1",
        num_classes: int = 10,
        regulariser: str = "none",
        fd_coefficient: float = 1e-4,
        fd_epsilon: float = 0.1,
        fd_every: int = 10,
        nf_coefficient: float = 1e-5,
        n_bits: int = 8,
        seed: int = 0,
    ):
        super().__init__()
        self._set_image_shape(image_shape, n_bits)
        if regulariser not in REGULARISERS:
            raise ValueError(f"unknown regulariser {regulariser!r}; expected one of {REGULARISERS}")
        if num_classes < 2:
            raise ValueError(f"an INN classifier needs num_classes >= 2, got {num_classes}")
        if fd_every < 1:
            raise ValueError(f"fd_every must be >= 1, got {fd_every}")
        self.num_classes = num_classes
        self.regulariser, self.fd_coefficient, self.fd_epsilon = regulariser, fd_coefficient, fd_epsilon
        self.fd_every, self.nf_coefficient = fd_every, nf_coefficient
        c, h, w = self.image_shape
        self.latent_shape = (c * 4**levels, h // 2**levels, w // 2**levels)
        self._set_flow(inn_body(self.image_shape, levels, depth, hidden, coupling, scale, permutation, seed),
                       StandardNormal(self.latent_shape), self.image_shape)
        dim = self.num_dims
        self.head = nn.Sequential(nn.BatchNorm1d(dim), nn.ReLU(), nn.Linear(dim, num_classes))

    # the invertible body ------------------------------------------------------------------------
    def prepare(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """uint8 images -> model-space floats in [-0.5, 0.5), without dequantisation noise."""
        return to_model_space(images, self.n_bits)

    # classification -----------------------------------------------------------------------------
    def logits(self, x: Tensor) -> Tensor:
        """Class scores of model-space images x."""
        self._check_input(x)
        return self.head(self.transform(x)[0].flatten(1))

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Predicted class of uint8 images."""
        return self.logits(self.prepare(images)).argmax(1)

    def _flat_forward(self, x: Tensor) -> Tensor:
        return self.transform(x)[0].flatten(1)

    def _flat_inverse(self, z: Tensor) -> Tensor:
        return self.transform.inverse(z.reshape(-1, *self.latent_shape))[0]

    def _penalty(self, x: Tensor, z: Tensor, logdet: Tensor, step: int | None,
                 generator: torch.Generator | None) -> Tensor | None:
        """The regulariser's term for this step (z, logdet = F(x) already computed), or None
        when it does not apply."""
        if self.regulariser == "fd" and (step is None or due(step, self.fd_every)):
            penalty = finite_difference_penalty(self._flat_forward, self._flat_inverse, x, eps=self.fd_epsilon,
                                                z=z.flatten(1), generator=generator)
            return self.fd_coefficient * penalty
        if self.regulariser == "nf":
            # the body's log-density from the forward pass already made for the logits
            return flow_nll_penalty(lambda _: self.base.log_prob(z) + logdet, x, self.nf_coefficient)
        return None

    def loss(self, batch, generator: torch.Generator | None = None, step: int | None = None) -> dict[str, Tensor]:
        """Cross-entropy (+ the regulariser on the steps it applies to, every step when `step` is
        None); `generator` draws the FD directions."""
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("an INN classifier trains on (images, labels) batches")
        images, labels = batch[0], batch[1]
        x = self.prepare(images)
        self._check_input(x)
        z, logdet = self.transform(x)
        logits = self.head(z.flatten(1))
        ce = F.cross_entropy(logits, labels)
        out = {"cross_entropy": ce.detach(), "accuracy": (logits.argmax(1) == labels).float().mean()}
        loss = ce
        penalty = self._penalty(x, z, logdet, step, generator)
        if penalty is not None:
            out["penalty"] = penalty.detach()
            loss = loss + penalty
        out["loss"] = loss
        return out

    def initialize(self, images: Tensor, labels: Tensor | None = None, generator=None) -> int:
        """Data-dependent actnorm initialisation on one batch."""
        from flowforge.bijections.actnorm import data_dependent_init

        return data_dependent_init(self, lambda b: self.transform(self.prepare(b)), images)

