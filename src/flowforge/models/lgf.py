"""Localised generative flows (Cornish et al., "Relaxing bijectivity constraints with continuously
indexed normalising flows" / LGF paper §3, §5; NOTES b.1-b.5): a base flow with an index variable
u inserted after every coupling / MADE layer, no batch norm, trained by the ELBO.

Each model is its base model (MAF, flat RealNVP, multi-scale RealNVP) built with
``batch_norm=False`` whose layer lists get a `LocalisedStep` after every MADE / coupling layer,
so the base model's own forward computes a one-sample ELBO (objectives/elbo.py). On top:

- `loss`: -ELBO averaged over `train_samples` draws of u (K_train, default 1);
- `log_prob_is(x, K)` and `log_prob(x, samples=K)`: the importance-sampling estimate logsumexp_k ELBO_k - log K
  (objectives/importance.py), K = `valid_samples` unless given, so every caller of `log_prob`
  (density grids, evaluation) gets a likelihood estimate, never the raw ELBO;
- `elbo(x)`: one-sample ELBOs; `sample`: ancestral, z ~ N(0, I), u_l ~ p(u_l | z_{l-1}),
  z_l = G_l^{-1}(z_{l-1}; u_l) through the base flow's inverse;
- `encode` / `decode`: the base model's, with every u drawn from q (encode) or p (decode), seeded by
  `generator`: one posterior / prior draw, so decode(encode(x)) == x does NOT hold (and the
  diagnostics, which need an invertible map, refuse these models).

LGF-Glow (the Glow base) is in models/lgf_glow.py.

Evaluation (`flowforge eval`, validation during training) uses K = `valid_samples` for validation
and `test_samples` with `test_repeats` repeats otherwise (evaluation/importance.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowforge.bijections import Chain
from flowforge.bijections.autoregressive import MAFStep
from flowforge.bijections.conditional import IndexedAffine
from flowforge.bijections.masked_coupling import MaskedAffineCoupling
from flowforge.distributions.conditional_gaussian import ConditionalDiagGaussian
from flowforge.errors import ConfigError
from flowforge.models.flat_realnvp import FlatRealNVP
from flowforge.models.maf import MAF
from flowforge.models.realnvp import RealNVP
from flowforge.models.registry import register
from flowforge.nets.mlp import MLP
from flowforge.nets.resnet import ResNet
from flowforge.objectives.bits_per_dim import bits_per_dim
from flowforge.objectives.elbo import LocalisedStep, insert_after, noise_source
from flowforge.objectives.importance import elbo_samples, importance_log_likelihood


def flat_localised_step(dim: int, u_dim: int, st_hidden: Sequence[int], pq_hidden: Sequence[int]) -> LocalisedStep:
    """Flat data (appendix C.1-C.2): tanh MLPs for (t, s) of u and for (mean, log-std) of p and q.
    Zero-initialised outputs: a fresh step has s = t = 0 and p = q = N(0, I), so the untrained
    model's ELBO is the base flow's exact log-likelihood."""
    return LocalisedStep(
        IndexedAffine((dim,), MLP(u_dim, 2 * dim, list(st_hidden), "tanh")),
        prior=ConditionalDiagGaussian(MLP(dim, 2 * u_dim, list(pq_hidden), "tanh"), u_dim),
        posterior=ConditionalDiagGaussian(MLP(dim, 2 * u_dim, list(pq_hidden), "tanh"), u_dim),
    )


def image_localised_step(shape: Sequence[int], u_channels: int, st_blocks: int, st_hidden: int, pq_blocks: int,
                         pq_hidden: int, zero_init: bool = False) -> LocalisedStep:
    """Images (§5.2, NOTES b.3-b.4): a per-pixel u of `u_channels` channels at the layer's H x W;
    ResNets with the learned scaled-tanh output for (t, s) and for p's and q's (mean, log-std).
    `zero_init`: the three ResNets' outputs start at zero (s = t = 0, p = q = N(0, I)), so the step
    starts as the identity and adds 0 to the ELBO (the LGF code does not; CIF's Glow nets do, NOTES b.3)."""
    c = int(shape[0])
    return LocalisedStep(
        IndexedAffine(tuple(shape), ResNet(u_channels, 2 * c, st_hidden, st_blocks, zero_init)),
        prior=ConditionalDiagGaussian(ResNet(c, 2 * u_channels, pq_hidden, pq_blocks, zero_init), u_channels),
        posterior=ConditionalDiagGaussian(ResNet(c, 2 * u_channels, pq_hidden, pq_blocks, zero_init), u_channels),
    )


class LocalisedFlow:
    """Mixin placed before the base model class: ELBO training, IS likelihood, ancestral sampling."""

    max_rows: int = 100_000  # rows per pass of the IS estimator
    log_prob_kind = "importance-sampled"

    def _set_sample_counts(self, train_samples: int, valid_samples: int, test_samples: int, test_repeats: int) -> None:
        for name, value in (("train_samples", train_samples), ("valid_samples", valid_samples),
                            ("test_samples", test_samples), ("test_repeats", test_repeats)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        self.train_samples, self.valid_samples = int(train_samples), int(valid_samples)
        self.test_samples, self.test_repeats = int(test_samples), int(test_repeats)

    regional_compile_flow = False  # speed = "auto" compiles the coupling networks instead

    def compile_flow(self, mode: str | None = None, regional: bool = False) -> None:
        raise ConfigError(f"{type(self).__name__}: train.compile_flow (and train.cuda_graphs) is not supported: "
                          "every training step draws u from a new per-step generator, which torch.compile would "
                          "guard on and recompile for; use train.compile (the coupling networks) instead")

    def elbo(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One-sample ELBO of every example (B,): the base model's log_prob through the stochastic steps."""
        with noise_source(self, generator):
            return super().log_prob(x)

    def log_prob_is(self, x: Tensor, samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Importance-sampling estimate of log p(x) with `samples` draws of u per example (DESIGN.md name)."""
        return importance_log_likelihood(elbo_samples(lambda r: self.elbo(r, generator), x, samples, self.max_rows))

    def log_prob(self, x: Tensor, context: Tensor | None = None, samples: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """`log_prob_is` with `samples` (default `valid_samples`) draws: what every caller of log_prob gets."""
        return self.log_prob_is(x, samples or self.valid_samples, generator)

    def _mean_elbo(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        k = self.train_samples
        return self.elbo(x.repeat(k, *([1] * (x.dim() - 1))), generator).view(k, x.shape[0]).mean(0)

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        with noise_source(self, generator):
            return super().sample(n, temperature=temperature, context=context, generator=generator)

    def encode(self, x: Tensor, context: Tensor | None = None, generator: torch.Generator | None = None) -> list[Tensor]:
        """The base model's latents with every u drawn from q(u | layer input): one posterior draw,
        different for every generator state; decode(encode(x)) == x does not hold. Without a
        `generator` the steps' current noise source is kept (torch's global RNG by default)."""
        if generator is None:
            return super().encode(x, context)
        with noise_source(self, generator):
            return super().encode(x, context)

    def decode(self, latents: list[Tensor], context: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """The base model's inverse with every u drawn from p(u | layer output) (ancestral). Without
        a `generator` the current noise source is kept, so `sample(generator=g)` of a base model
        that samples through `decode` still draws every u from g."""
        if generator is None:
            return super().decode(latents, context)
        with noise_source(self, generator):
            return super().decode(latents, context)


class _FlatLocalisedFlow(LocalisedFlow):
    DATA_ARGS = ("dim",)  # no context
    auto_compile_flow = False  # trains by an ELBO, not the density pass

    def _insert_steps(self, kind: type, u_dim: int, st_hidden, pq_hidden) -> None:
        if u_dim < 1:
            raise ValueError(f"u_dim must be positive, got {u_dim}")
        self.transform = Chain(insert_after(list(self.transform.layers), kind,
                                            lambda _: flat_localised_step(self.dim, u_dim, st_hidden, pq_hidden)))

    def loss(self, batch, generator=None) -> dict[str, Tensor]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        self._check(x)
        neg_elbo = -self._mean_elbo(x, generator).mean()
        return {"loss": neg_elbo, "nll": neg_elbo.detach()}


@register("lgf-maf")
class LGFMAF(_FlatLocalisedFlow, MAF):
    """LGF-MAF: `layers` MADE steps (reversed order between them), u after each (appendix C.1-C.2).
    Defaults: the two-uniforms model of appendix C.1 (80,810 parameters on 2-D data)."""

    def __init__(self, dim: int, layers: int = 5, hidden: Sequence[int] = (10, 10), activation: str = "tanh",
                 u_dim: int = 1, st_hidden: Sequence[int] = (10, 10), pq_hidden: Sequence[int] = (50, 50, 50, 50),
                 train_samples: int = 1, valid_samples: int = 10, test_samples: int = 1000, test_repeats: int = 3):
        MAF.__init__(self, dim, layers=layers, hidden=hidden, activation=activation, batch_norm=False)
        self._insert_steps(MAFStep, u_dim, st_hidden, pq_hidden)
        self._set_sample_counts(train_samples, valid_samples, test_samples, test_repeats)


@register("lgf-flat-realnvp")
class LGFFlatRealNVP(_FlatLocalisedFlow, FlatRealNVP):
    """LGF over the flat RealNVP: u after every affine coupling, no batch norm."""

    def __init__(self, dim: int, layers: int = 5, hidden: Sequence[int] = (50, 50), u_dim: int = 1,
                 st_hidden: Sequence[int] = (10, 10), pq_hidden: Sequence[int] = (50, 50, 50, 50),
                 train_samples: int = 1, valid_samples: int = 10, test_samples: int = 1000, test_repeats: int = 3):
        FlatRealNVP.__init__(self, dim, layers=layers, hidden=hidden, batch_norm=False)
        self._insert_steps(MaskedAffineCoupling, u_dim, st_hidden, pq_hidden)
        self._set_sample_counts(train_samples, valid_samples, test_samples, test_repeats)


class ImageLocalisedFlow(LocalisedFlow):
    """Image LGFs (LGF-RealNVP, LGF-Glow): the loss is the -ELBO in bits/dim against the discrete
    data (mean over `train_samples` draws of u, one dequantisation per image, NOTES b.5), and the
    base model's data-dependent initialisation draws its u from the given generator."""

    max_rows = 1000  # images per pass of the IS estimator: K = 1000 for a batch of B takes B passes

    def loss(self, batch, generator=None) -> dict[str, Tensor]:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = self.prepare(images, generator)
        bpd = bits_per_dim(self._mean_elbo(x, generator), self.num_dims, self.n_bits).mean()
        return {"loss": bpd, "bpd": bpd.detach()}

    def initialize(self, x: Tensor, context: Tensor | None = None, generator=None) -> int:
        with noise_source(self, generator):
            return super().initialize(x, context, generator=generator)


@register("lgf-realnvp")
class LGFRealNVP(ImageLocalisedFlow, RealNVP):
    """LGF-RealNVP (§5.2): the multi-scale RealNVP with `blocks` x `hidden` coupling ResNets, no batch
    norm, a single-channel per-pixel u after every coupling; (t, s) from a `st_blocks` x `st_hidden`
    ResNet of u, p and q from `pq_blocks` x `pq_hidden` ResNets (paper: 4x64, 2x8, 2x64)."""

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), n_bits: int = 8, blocks: int = 4, hidden: int = 64,
                 logit_alpha: float = 1e-6, u_channels: int = 1, st_blocks: int = 2, st_hidden: int = 8,
                 pq_blocks: int = 2, pq_hidden: int = 64, train_samples: int = 1, valid_samples: int = 10,
                 test_samples: int = 1000, test_repeats: int = 3):
        RealNVP.__init__(self, image_shape, n_bits=n_bits, blocks=blocks, hidden=hidden, logit_alpha=logit_alpha,
                         batch_norm=False)
        if u_channels < 1:
            raise ValueError(f"u_channels must be positive, got {u_channels}")

        def step(coupling: MaskedAffineCoupling) -> LocalisedStep:
            return image_localised_step(coupling.mask.shape, u_channels, st_blocks, st_hidden, pq_blocks, pq_hidden)

        for i, level in enumerate(self.transform.levels):
            self.transform.levels[i] = Chain(insert_after(list(level.layers), MaskedAffineCoupling, step))
        self._set_sample_counts(train_samples, valid_samples, test_samples, test_repeats)
