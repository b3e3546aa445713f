"""Glow (Kingma & Dhariwal 2018): a multi-scale flow of L levels x K steps.

Each level: squeeze -> K x (actnorm -> permutation -> coupling) -> split (all but the last),
where the factored-out half gets a learned conditional Gaussian prior given the kept half and
the final latent a learned (optionally class-conditional) top prior (section 3, figure 2). As a
`Flow`: a `MultiScale` transform whose splits standardise the factored-out halves by their split
priors (their latents are the public code's eps), over a base that is N(0, I) on those parts and
the top prior on the top latent.
Data are n-bit images scaled to [-0.5, 0.5) and dequantised with uniform noise; the loss is
bits/dim against the discrete data, plus y_weight x the classifier head's bits when the top
prior is class-conditional (section 5, 'class-conditional').

Context (docs/conditional-flows.md): with `context_dim` D > 0 the model is p(x | c) for a context
vector c of shape (B, D): every coupling network reads c as D extra input channels (broadcast over
the positions, `GlowCouplingNet`), and the split priors and the top prior add a zero-initialised
linear map of c to their means and log-stds (per channel, as `ycond` does with the label), so a
fresh model starts as the unconditional one. Actnorm, the permutations and the squeezes are the
same map for every c. A batch (images, context) trains p(x | c); `encode`, `decode`, `sample`
and `log_prob` take the context. A class label (`num_classes`) and a context vector do not mix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from flowforge.bijections import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Chain,
    InvertibleConv1x1,
    InvertibleConv1x1LU,
    ReversePermutation,
    ShufflePermutation,
    Squeeze,
)
from flowforge.bijections.actnorm import data_dependent_init
from flowforge.bijections.glow_coupling_net import GlowCouplingNet
from flowforge.bijections.multiscale import FactorOut, MultiScale
from flowforge.bijections.permutations import refresh_inverse_caches
from flowforge.bijections.scale_functions import SCALE_FUNCTIONS
from flowforge.bijections.split_prior import SplitPrior
from flowforge.distributions.concatenated import Concatenated
from flowforge.distributions.glow_priors import TopPrior
from flowforge.distributions.normal import StandardNormal
from flowforge.flow import with_own_code
from flowforge.models.base import ImageFlowModel
from flowforge.models.registry import register
from flowforge.nets.zero_init import LinearZeros
from flowforge.objectives.bits_per_dim import bits_per_dim

PERMUTATIONS = ("conv1x1-lu", "conv1x1", "shuffle", "reverse")
COUPLINGS = ("affine", "additive")


def _permutation(name: str, channels: int, seed: int):
    if name == "conv1x1-lu":
        return InvertibleConv1x1LU(channels, seed=seed)
    if name == "conv1x1":
        return InvertibleConv1x1(channels, seed=seed)
    if name == "shuffle":
        return ShufflePermutation(channels, seed=seed)
    if name == "reverse":
        return ReversePermutation(channels)
    raise ValueError(f"unknown permutation {name!r}; expected one of {PERMUTATIONS}")


def flow_step(channels: int, hidden: int, coupling: str, scale: str, permutation: str, seed: int,
              edge_bias: bool = False, context_dim: int = 0) -> Chain:
    """One Glow step: actnorm -> permutation -> coupling (`edge_bias`: nets/edge_bias.py; the
    coupling network reads a context vector of `context_dim` values when that is > 0)."""
    net = partial(GlowCouplingNet, hidden=hidden, edge_bias=edge_bias, context_dim=context_dim)
    if coupling == "affine":
        coupler = AffineCoupling(channels, net, scale=scale)
    elif coupling == "additive":
        coupler = AdditiveCoupling(channels, net)
    else:
        raise ValueError(f"unknown coupling {coupling!r}; expected one of {COUPLINGS}")
    return Chain([ActNorm(channels), _permutation(permutation, channels, seed), coupler])


def _run_step(step, x: Tensor, context: Tensor | None = None):
    """A flow step's forward, as a function of the step (Glow.compile_flow(regional=True))."""
    return type(step).forward(step, x, context=context)


def level_shapes(image_shape: Sequence[int], levels: int) -> list[tuple[int, int, int]]:
    """(C, H, W) at each level's flow steps: squeezed to (4C, H/2, W/2), then half of the channels
    factored out by the split before the next level."""
    c, h, w = (int(s) for s in image_shape)
    shapes = []
    for level in range(levels):
        c, h, w = c * 4, h // 2, w // 2
        shapes.append((c, h, w))
        if level < levels - 1:
            c = c // 2
    return shapes


def _legacy_step_key(match: re.Match) -> str:
    return f"transform.levels.{match[1]}.layers.{int(match[2]) + 1}."


@register("glow")
class Glow(ImageFlowModel):
    """Multi-scale Glow over images of shape `image_shape` = (C, H, W)."""

    CHOICES = {"coupling": COUPLINGS, "permutation": PERMUTATIONS, "scale": tuple(SCALE_FUNCTIONS)}
    regional_compile_flow = True  # compile_flow(regional=True): one graph per level shape
    LEGACY_KEYS = ((r"^steps\.(\d+)\.layers\.(\d+)\.", _legacy_step_key),
                   (r"^split_priors\.(\d+)\.", r"transform.splits.\1.prior."),
                   (r"^top_prior\.", "base.parts.{top}."))
    _compiled_sampling = None  # set by compile_sampling
    _sampling_mode: str | None = None

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        levels: int = 2,
        depth: int = 16,
        hidden: int = 256,
        coupling: str = "affine",
        scale: str = "sigmoid",
        permutation: str = "conv1x1-lu",
        n_bits: int = 8,
        num_classes: int = 0,
        y_weight: float = 0.01,
        learn_top: bool = True,
        seed: int = 0,
        memory_saving: bool = False,
        checkpoint_steps: bool = False,
        edge_bias: bool = False,
        context_dim: int = 0,
    ):
        """`memory_saving`: reversible backprop through each level's steps (activations rebuilt
        from outputs, memory independent of depth; exact only as far as the inverse is);
        `checkpoint_steps`: torch.utils.checkpoint per step instead (exact, memory O(depth));
        `edge_bias`: the public code's border channel in every zero-padded 3x3 convolution (coupling
        networks, split priors) and in the learned top prior; `context_dim`: conditioned on a context
        vector of that many values per example (module docstring)."""
        super().__init__()
        self.memory_saving, self.checkpoint_steps = memory_saving, checkpoint_steps
        self._set_image_shape(image_shape, n_bits)
        c, h, w = self.image_shape
        if levels < 1 or depth < 1:
            raise ValueError(f"Glow needs levels >= 1 and depth >= 1, got levels={levels}, depth={depth}")
        if h % 2**levels or w % 2**levels:
            raise ValueError(
                f"image size {h}x{w} cannot be squeezed {levels} times (needs H and W divisible by {2**levels})"
            )
        if context_dim < 0:
            raise ValueError(f"context_dim must be >= 0, got {context_dim}")
        if num_classes > 0 and context_dim > 0:
            raise ValueError(f"Glow takes a class label (num_classes={num_classes}) or a context vector "
                             f"(context_dim={context_dim}) as its context, not both")
        self.levels, self.num_classes, self.y_weight = levels, num_classes, y_weight
        self.context_dim = int(context_dim)
        self.level_shapes = level_shapes(self.image_shape, levels)
        chains, splits, latent_shapes = [], [], []
        for level, (c, h, w) in enumerate(self.level_shapes):
            steps = [flow_step(c, hidden, coupling, scale, permutation, seed + 1000 * level + k, edge_bias,
                               context_dim) for k in range(depth)]
            chains.append(Chain([Squeeze(), *steps]))
            if level < levels - 1:
                splits.append(FactorOut(c // 2, SplitPrior(c // 2, c // 2, edge_bias=edge_bias,
                                                           context_dim=context_dim)))
                latent_shapes.append((c // 2, h, w))
        self.top_shape = self.level_shapes[-1]
        latent_shapes.append(self.top_shape)
        gradient = "reversible" if memory_saving else "checkpoint" if checkpoint_steps else "autograd"
        top = TopPrior(self.top_shape, learn=learn_top, num_classes=num_classes, edge_bias=edge_bias,
                       context_dim=context_dim)
        # the top prior draws its noise first, then the splits from the top level down (as Glow always did)
        base = Concatenated([*(StandardNormal(s) for s in latent_shapes[:-1]), top],
                            draw_order=list(reversed(range(levels))))
        self._set_flow(MultiScale(chains, splits, latent_shapes, gradient), base, self.image_shape)
        self.classifier = LinearZeros(self.top_shape[0], num_classes) if num_classes > 0 else None

    @property
    def top_prior(self) -> TopPrior:
        return self.base.parts[-1]

    def level_steps(self, level: int) -> list:
        """The flow steps of `level` (after its squeeze)."""
        return list(self.transform.levels[level].layers)[1:]

    def upgrade_state_dict(self, state):
        top = str(self.levels - 1)
        return {k.replace("{top}", top): v for k, v in super().upgrade_state_dict(state).items()}

    # context ----------------------------------------------------------------------------------
    def _contexts(self, context: Tensor | None, batch: int) -> tuple[Tensor | None, Tensor | None]:
        """(what the transform's layers and split priors see, what the top prior sees): the
        checked context vector for both with `context_dim` > 0; the labels for the top prior
        alone when class-conditional; an unconditional Glow refuses a context."""
        if self.num_classes > 0:
            return None, context
        vector = self._context(context, batch)
        return vector, vector

    def _layer_context(self, context: Tensor | None, batch: int) -> Tensor | None:
        """`encode` / `decode`: the context vector, checked; labels are not needed (and dropped)."""
        return self._contexts(context, batch)[0]

    # data -> latent ---------------------------------------------------------------------------
    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[list[Tensor], Tensor, Tensor]:
        """All latents, the summed log|det| (split priors' standardisations included) and the
        base log-density (nats, (B,))."""
        self._check_input(x)
        layer_context, prior_context = self._contexts(context, x.shape[0])
        latents, logdet = self.transform.latents(x, layer_context)
        return latents, logdet, self.base.log_prob_parts(latents, prior_context)

    def compile_flow(self, mode: str | None = None, regional: bool = False) -> None:
        """Compile the whole data -> latent pass (all levels, priors and log-dets) with
        torch.compile, one graph per input shape (`train.compile_flow`; `mode="reduce-overhead"`
        replays it as CUDA graphs, `train.cuda_graphs`); the mathematics is unchanged. The
        data-dependent initialisation runs eagerly (bijections/actnorm.py).

        `regional`: compile one flow step (actnorm, permutation, coupling) instead, the graph
        reused by every step of the same input shape (PyTorch's "regional compilation": the
        parameters are graph inputs, so the K steps of a level share one compilation); squeezes,
        splits and priors stay eager. Compile time then scales with the number of level shapes,
        not with L x K."""
        if regional:
            # one compiled function taking the step as an argument: dynamo guards on the step's
            # type and tensor shapes, not on which instance, so the steps of a level share a graph
            # (compiling each module on its own traced one graph per step)
            shared = torch.compile(with_own_code(_run_step), dynamic=False, mode=mode)  # this model's graphs
            for level in range(self.levels):
                for i, step in enumerate(self.level_steps(level)):
                    if level == 0 and i == 0:
                        # stays eager: its input, the data, needs no grad, so compiled it would be a
                        # graph of its own (a third of the compile time for L = 2) for one step of L x K
                        continue
                    step.forward = partial(shared, step)
            return
        self._eager_forward = getattr(self, "_eager_forward", self._forward)
        own = with_own_code(self._eager_forward.__func__).__get__(self)  # this model's graphs (flow.py)
        self._forward = torch.compile(own, dynamic=False, mode=mode)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Continuous log-density (nats) of x in model space [-0.5, 0.5)^D (dequantised data)."""
        _, logdet, log_prior = self._forward(x, context)
        return logdet + log_prior

    def log_prob_per_class(self, x: Tensor) -> Tensor:
        """(B, num_classes): log p(x | k) for every class k of a class-conditional Glow, from one
        pass of the flow (only the top prior depends on the label). `log_prob(x)` without labels
        is their equal-weight mixture, log (1/K) sum_k p(x | k)."""
        if self.num_classes == 0:
            raise ValueError("log_prob_per_class needs a class-conditional Glow (num_classes > 0)")
        self._check_input(x)
        latents, logdet = self.transform.latents(x, None)
        *lower, top = self.base.parts
        rest = sum((part.log_prob(z) for part, z in zip(lower, latents[:-1])), torch.zeros_like(logdet))
        return (logdet + rest)[:, None] + top.log_prob_per_class(latents[-1])

    # latent -> data ---------------------------------------------------------------------------
    def _temperatures(self, temperature) -> list[float]:
        if isinstance(temperature, (int, float)):
            return [float(temperature)] * self.levels
        temps = [float(t) for t in temperature]
        if len(temps) != self.levels:
            raise ValueError(f"need one temperature or {self.levels} (one per level), got {len(temps)}")
        return temps

    def sample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        """Samples in model space; `temperature` is one value or one per level (index 0 = first
        split, last = top prior); T = 0 gives the prior means all the way down. After
        `compile_sampling`, the inverse pass after the base draws runs compiled in eval mode without
        gradients (the same samples, float rounding aside)."""
        z, layer_context = self._draw(n, temperature, context, generator)
        if self._compiled_sampling is None or self.training or torch.is_grad_enabled():
            return self.transform.inverse(z, layer_context)[0]
        refresh_inverse_caches(self)  # read as they are by the compiled pass (bijections/permutations.py)
        if self._sampling_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        args = (z,) if layer_context is None else (z, layer_context)  # an unconditional graph as before
        return self._compiled_sampling(*args).clone()  # a CUDA-graph output is overwritten next call

    def rsample(self, n: int, temperature=1.0, context: Tensor | None = None, generator=None) -> Tensor:
        """n samples through which gradients reach the parameters (eager, `temperature` as in `sample`)."""
        z, layer_context = self._draw(n, temperature, context, generator)
        return self.transform.inverse(z, layer_context)[0]

    def _draw(self, n: int, temperature, context: Tensor | None, generator) -> tuple[Tensor, Tensor | None]:
        """The base's draw (the top prior given labels or the context) and the layers' context."""
        layer_context, prior_context = self._contexts(context, n)
        return self.base.sample(n, self._temperatures(temperature), prior_context, generator), layer_context

    def _inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return self.transform.inverse(z, context)[0]

    def compile_sampling(self, mode: str | None = None) -> None:
        """Compile the inverse pass of sampling (split priors, inverse steps, unsqueezes) with
        torch.compile, one graph per batch size; `mode="reduce-overhead"` replays it as CUDA
        graphs. Used by `sample` in eval mode without gradients."""
        self._compiled_sampling = torch.compile(self._inverse, dynamic=False, mode=mode)
        self._sampling_mode = mode

    # training ---------------------------------------------------------------------------------
    def _split_batch(self, batch) -> tuple[Tensor, Tensor | None]:
        """(images, the labels of a class-conditional model or the context of a conditional one)."""
        if isinstance(batch, (tuple, list)):
            images, second = batch[0], batch[1] if len(batch) > 1 else None
        else:
            images, second = batch, None
        return images, (second if self.num_classes > 0 or self.context_dim > 0 else None)

    def loss(self, batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        images, context = self._split_batch(batch)
        labels = context if self.num_classes > 0 else None
        x = self.prepare(images, generator)
        latents, logdet, log_prior = self._forward(x, context)
        bpd = bits_per_dim(logdet + log_prior, self.num_dims, self.n_bits).mean()
        out = {"bpd": bpd.detach()}
        loss = bpd
        if self.classifier is not None:
            logits = self.classifier(latents[-1].mean(dim=(2, 3)))
            bits_y = F.cross_entropy(logits, labels) / torch.log(torch.tensor(2.0))
            loss = loss + self.y_weight * bits_y
            out["bits_y"] = bits_y.detach()
            out["accuracy"] = (logits.argmax(1) == labels).float().mean()
        out["loss"] = loss
        return out

    def initialize(self, images: Tensor, labels: Tensor | None = None, generator=None) -> int:
        """Data-dependent actnorm initialisation on one batch (Glow uses 256 images); `labels`: the
        labels of a class-conditional model or the context of a conditional one (else ignored)."""
        ctx = labels if self.num_classes > 0 or self.context_dim > 0 else None
        return data_dependent_init(self, lambda b: self._forward(self.prepare(b, generator), ctx), images)
