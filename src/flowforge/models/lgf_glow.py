"""LGF-Glow: Glow (Kingma & Dhariwal 2018; models/glow.py) with a localised step after every
coupling (LGF paper §3, algorithm 1, §5; NOTES b.1-b.5, b.8 "lgf@HEAD ... also a Glow config").

Every flow step becomes actnorm -> permutation -> coupling -> u, where u is a per-pixel index of
`u_channels` channels at that level's (C, H, W) (`image_localised_step`): G(x; u) = (x + t(u)) ⊙
exp(s(u)), q(u | coupling output) and p(u | G's output). Squeeze, splits, split priors and the
learned top prior are Glow's. Training minimises the -ELBO in bits/dim (`train_samples` draws of
u); `log_prob` is the importance-sampled estimate (`valid_samples` draws; `flowforge eval` uses
`test_samples` x `test_repeats`); `sample` is ancestral, the temperature acting on Glow's priors
only while every u is drawn from p at temperature 1.

The s/t, p and q ResNets start with zero outputs, so an untrained LGF-Glow is exactly Glow (each
step the identity, log p(u | z) - log q(u | x) = 0) and Glow's data-dependent actnorm
initialisation sees the same activations as in Glow.

Refused, because they cannot hold for a stochastic model (ConfigError):
- `memory_saving`: reversible backprop rebuilds each layer's input through its inverse, and a
  localised step's inverse draws a new u ~ p(u | z) instead of the forward's u ~ q(u | x);
- `checkpoint_steps`: torch.utils.checkpoint re-runs each step's forward in backward; it restores
  torch's global RNG only, not the model's noise generator (the trainer's per-step generator), so
  u would be drawn again, and the ResNets' batch norms would update their statistics twice;
- `num_classes > 0`: the IS evaluation (evaluation/importance.py) scores images without labels,
  and Glow's classifier head would read a top latent that depends on the random u;
- `train.compile_flow`: the per-step noise generator would make torch.compile recompile (refused
  for every LGF model, models/lgf.py).
`encode` / `decode` draw u (from q / p): decode(encode(x)) == x does not hold (models/lgf.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.bijections import AdditiveCoupling, AffineCoupling, Chain
from flowforge.errors import ConfigError
from flowforge.models.glow import Glow
from flowforge.models.lgf import ImageLocalisedFlow, image_localised_step
from flowforge.models.registry import register
from flowforge.objectives.elbo import LocalisedStep, insert_after

COUPLING_LAYERS = (AffineCoupling, AdditiveCoupling)

REFUSED = {
    "memory_saving": "reversible backprop rebuilds each layer's input through its inverse, and the inverse of a "
                     "localised step draws a new u ~ p(u | z), not the forward pass's u ~ q(u | x), so the "
                     "gradients would be wrong",
    "checkpoint_steps": "torch.utils.checkpoint re-runs each step's forward in backward, restoring torch's global "
                        "RNG but not the model's noise generator, so u would be drawn again (and the s/t, p, q "
                        "batch norms would update their statistics twice); use a smaller batch instead",
    "num_classes": "the importance-sampled evaluation scores images without their labels, and Glow's classifier "
                   "head would read a top latent that depends on the random u; lgf-glow is unconditional (0)",
}


def refuse_stochastic_incompatible(**options: object) -> None:
    """ConfigError for every Glow option in `options` that is set but cannot hold for LGF-Glow."""
    for name, value in options.items():
        if value:
            raise ConfigError(f"lgf-glow: model.{name} = {value!r} is not supported: {REFUSED[name]}")


@register("lgf-glow")
class LGFGlow(ImageLocalisedFlow, Glow):
    """Glow of `levels` x `depth` steps (`hidden`-channel coupling networks) with a localised step
    after every coupling: per-pixel u of `u_channels` channels, (t, s) from a `st_blocks` x
    `st_hidden` ResNet of u, p and q from `pq_blocks` x `pq_hidden` ResNets (zero-initialised outputs)."""

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
        learn_top: bool = True,
        seed: int = 0,
        u_channels: int = 1,
        st_blocks: int = 2,
        st_hidden: int = 8,
        pq_blocks: int = 2,
        pq_hidden: int = 64,
        train_samples: int = 1,
        valid_samples: int = 10,
        test_samples: int = 1000,
        test_repeats: int = 3,
        num_classes: int = 0,
        memory_saving: bool = False,
        checkpoint_steps: bool = False,
        edge_bias: bool = False,
    ):
        refuse_stochastic_incompatible(memory_saving=memory_saving, checkpoint_steps=checkpoint_steps,
                                       num_classes=num_classes)
        if u_channels < 1:
            raise ValueError(f"u_channels must be positive, got {u_channels}")
        Glow.__init__(self, image_shape, levels=levels, depth=depth, hidden=hidden, coupling=coupling, scale=scale,
                      permutation=permutation, n_bits=n_bits, learn_top=learn_top, seed=seed, edge_bias=edge_bias)

        def with_index(step: Chain, shape: tuple[int, int, int]) -> Chain:
            def make(_coupling) -> LocalisedStep:
                return image_localised_step(shape, u_channels, st_blocks, st_hidden, pq_blocks, pq_hidden,
                                            zero_init=True)

            return Chain(insert_after(list(step.layers), COUPLING_LAYERS, make))

        for level, shape in enumerate(self.level_shapes):
            chain = self.transform.levels[level]
            squeeze, steps = chain.layers[0], chain.layers[1:]
            self.transform.levels[level] = Chain([squeeze, *(with_index(step, shape) for step in steps)])
        self._set_sample_counts(train_samples, valid_samples, test_samples, test_repeats)

