"""Analytic Lipschitz bounds (l2) of each invertible block, forward and inverse (Behrmann et al.
2021, "Understanding and mitigating exploding inverses in invertible neural networks",
supplement A, table 3, and B, lemmas 5 and 6):

- additive coupling y_b = x_b + t(x_a): Lip(F), Lip(F^-1) <= 1 + Lip(t)  (lemma 5; global);
- affine coupling, as this library computes it (shift then scale, `bijections/coupling.py`):
  y_b = (x_b + shift(x_a)) * g(h(x_a)), g the scale function. Lemma 6's proof, unchanged for
  this parametrisation (its t is shift * g), gives
      Lip(F)    <= max(1, c_g)   + A * c_g'     * Lip(h) + c_g * Lip(shift),  A = max |x_b + shift|
      Lip(F^-1) <= max(1, c_1/g) + B * c_(1/g)' * Lip(h) + Lip(shift),        B = max |y_b|
  with c_g = sup g, c_g' = sup |g'| (and the same of 1/g) over the scale network's outputs h.
  These are local bounds, as the paper's: A and B are maxima over the evaluated examples (the
  paper's bounded set [a, b]^d), and c_g, c_g', c_1/g, c_(1/g)' are the scale function's global
  suprema where they are finite (sigmoid: c_g = 1, c_g' = 1/4; its 1/g and (1/g)' are unbounded)
  and otherwise their maxima at the examples' h. So the bound holds at the examples: it bounds
  the local Lipschitz constant (Jacobian spectral norm) at each of them;
- invertible residual block y = x + g(x), c = Lip(g) < 1: 1 + c and 1 / (1 - c)  (Behrmann et al.
  2019); c is computed from the layers' weights (`lipschitz_nets`), not taken from `coeff`;
- actnorm: max_i |s_i| and max_i 1 / |s_i| (exact);
- 1x1 convolution W (plain or LU): ||W||_2 and ||W^-1||_2 of the C x C matrix (exact: the same
  matrix at every position);
- permutations, squeeze: 1 and 1 (exact);
- logit pre-processing (not in table 3): the supremum of the elementwise derivative on its data
  domain [low, low + scale)^D, (1 - 2 alpha) / (scale alpha (1 - alpha)), and scale / (4 (1 - 2 alpha))
  for the inverse (global on that domain).

Lip(t), Lip(h), Lip(shift), Lip(g) of the networks: `lipschitz_nets.lipschitz_bound`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from flowforge.bijections.actnorm import ActNorm
from flowforge.bijections.base import Inverse
from flowforge.bijections.coupling import AdditiveCoupling, AffineCoupling
from flowforge.bijections.elementwise import Logit
from flowforge.bijections.permutations import InvertibleConv1x1, InvertibleConv1x1LU, ReversePermutation, ShufflePermutation
from flowforge.bijections.reshape import Squeeze
from flowforge.bijections.residual import ResidualBlock
from flowforge.bijections.scale_functions import TANH_EXP_BOUND
from flowforge.diagnostics.lipschitz_nets import matrix_norm, safe_lipschitz_bound
from flowforge.nets.lipschitz import SpectralNormConv2d, SpectralNormLinear


@dataclass
class BlockBound:
    """Analytic bounds on Lip(F) and Lip(F^-1) of one block; `scope` says where they hold."""

    forward: float
    inverse: float
    scope: str  # "exact" | "global" | "data domain" | "local (at the examples)" | "none"
    terms: dict = field(default_factory=dict)
    note: str = ""


def _tanh_exp_peak(bound: float) -> float:
    # sup over t = tanh(h / bound) in (-1, 1) of e^(bound t) (1 - t^2), at t = (sqrt(1 + b^2) - 1) / b
    t = (math.sqrt(1.0 + bound**2) - 1.0) / bound
    return math.exp(bound * t) * (1.0 - t * t)


# global suprema of (g, |g'|, 1/g, |(1/g)'|) over all raw outputs h; None: unbounded
GLOBAL_SCALE_CONSTANTS: dict[str, tuple[float | None, float | None, float | None, float | None]] = {
    "sigmoid": (1.0, 0.25, None, None),  # g = sigmoid(h + 2) in (0, 1); 1/g = 1 + e^-(h+2)
    "squashed-sigmoid": (1.0, 0.125, 2.0, 0.25),  # g = (1 + sigmoid) / 2; |(1/g)'| peaks at sigmoid = 1/3
    "tanh-exp": (math.exp(TANH_EXP_BOUND), _tanh_exp_peak(TANH_EXP_BOUND),
                 math.exp(TANH_EXP_BOUND), _tanh_exp_peak(TANH_EXP_BOUND)),
    "exp": (None, None, None, None),
}
SCALE_CONSTANT_NAMES = ("c_g", "c_dg", "c_inv_g", "c_dinv_g")


def scale_constants(name: str, scale_fn, h: Tensor) -> tuple[dict[str, float], list[str]]:
    """(c_g, c_g', c_1/g, c_(1/g)') for scale function `name` and the names of those taken as
    maxima at the raw outputs `h` (the others are global suprema)."""
    h = h.detach().double().requires_grad_(True)
    with torch.enable_grad():
        g = scale_fn(h)[0]
        (dg,) = torch.autograd.grad(g.sum(), h, retain_graph=True)  # elementwise: the diagonal
        (dinv,) = torch.autograd.grad((1.0 / g).sum(), h)
    g = g.detach()
    local = {"c_g": g.max(), "c_dg": dg.abs().max(), "c_inv_g": (1.0 / g).max(), "c_dinv_g": dinv.abs().max()}
    known = GLOBAL_SCALE_CONSTANTS.get(name, (None,) * 4)
    out, local_names = {}, []
    for key, glob in zip(SCALE_CONSTANT_NAMES, known):
        if glob is None:
            out[key] = float(local[key])
            local_names.append(key)
        else:
            out[key] = glob
    return out, local_names


def _mul(*xs: float) -> float:
    return 0.0 if any(x == 0 for x in xs) else math.prod(xs)


def _affine_bound(block: AffineCoupling, x: Tensor, conv: str) -> BlockBound:
    x_a, x_b = x[:, : block.split], x[:, block.split :]
    with torch.no_grad():
        h = block.net(x_a)
    shift, raw = h[:, 0::2], h[:, 1::2]
    y_b = (x_b + shift) * block.scale_fn(raw)[0]
    n = h.shape[1]
    lip_shift, why_t = safe_lipschitz_bound(block.net, x_a.shape[1:], list(range(0, n, 2)), conv)
    lip_h, why_s = safe_lipschitz_bound(block.net, x_a.shape[1:], list(range(1, n, 2)), conv)
    c, local = scale_constants(block.scale_name, block.scale_fn, raw)
    a, b = float((x_b + shift).abs().max()), float(y_b.abs().max())
    fwd = max(1.0, c["c_g"]) + _mul(a, c["c_dg"], lip_h) + _mul(c["c_g"], lip_shift)
    inv = max(1.0, c["c_inv_g"]) + _mul(b, c["c_dinv_g"], lip_h) + lip_shift
    note = f"at the examples: A, B{''.join(', ' + k for k in local)}"
    terms = {"lip_shift": lip_shift, "lip_scale_net": lip_h, "A": a, "B": b, **c}
    return BlockBound(fwd, inv, "local (at the examples)", terms, "; ".join(s for s in (note, why_t or why_s) if s))


def _residual_bound(block: ResidualBlock, conv: str) -> BlockBound:
    c, why = safe_lipschitz_bound(block.net, block.event_shape, conv=conv)
    coeffs = [m.coeff for m in block.net.modules() if isinstance(m, SpectralNormLinear | SpectralNormConv2d)]
    terms = {"lip_g": c, "coeff_product": math.prod(coeffs) if coeffs else None}
    inv = 1.0 / (1.0 - c) if c < 1.0 else math.inf
    return BlockBound(1.0 + c, inv, "global", terms, why or ("" if c < 1 else "Lip(g) >= 1: not invertible by the bound"))


def _matrix_bound(block, channels: int, dtype: torch.dtype) -> BlockBound:
    eye = torch.eye(channels, dtype=dtype)
    with torch.no_grad():  # a (C, C) flat batch of unit vectors gives W^T and W^-T
        w, w_inv = block(eye)[0], block.inverse(eye)[0]
    return BlockBound(matrix_norm(w), matrix_norm(w_inv), "exact")


def block_bound(block, x: Tensor, conv: str = "operator") -> BlockBound:
    """The analytic bounds of `block` for inputs x (a batch of the block's forward inputs; used by
    the local bounds only). A block type without one gets inf, scope "none"."""
    if isinstance(block, Inverse):
        with torch.no_grad():
            inner = block_bound(block.bijection, block(x)[0], conv)
        return BlockBound(inner.inverse, inner.forward, inner.scope, inner.terms, inner.note)
    if isinstance(block, ActNorm):
        s = block.log_scale.detach().double()
        return BlockBound(float(s.exp().max()), float((-s).exp().max()), "exact")
    if isinstance(block, InvertibleConv1x1 | InvertibleConv1x1LU):
        return _matrix_bound(block, block.num_channels, x.dtype)
    if isinstance(block, ReversePermutation | ShufflePermutation | Squeeze):
        return BlockBound(1.0, 1.0, "exact")
    if isinstance(block, AdditiveCoupling):
        lip_t, why = safe_lipschitz_bound(block.net, x[:, : block.split].shape[1:], conv=conv)
        return BlockBound(1.0 + lip_t, 1.0 + lip_t, "global", {"lip_t": lip_t}, why)
    if isinstance(block, AffineCoupling):
        return _affine_bound(block, x, conv)
    if isinstance(block, ResidualBlock):
        return _residual_bound(block, conv)
    if isinstance(block, Logit):
        a, s = block.alpha, block.scale
        fwd = (1 - 2 * a) / (s * a * (1 - a)) if a > 0 else math.inf
        return BlockBound(fwd, s / (4 * (1 - 2 * a)), "data domain", {"alpha": a, "scale": s})
    return BlockBound(math.inf, math.inf, "none", note=f"no analytic bound for {type(block).__name__}")


BOUNDED_TYPES = (ActNorm, InvertibleConv1x1, InvertibleConv1x1LU, ReversePermutation, ShufflePermutation, Squeeze,
                 AdditiveCoupling, AffineCoupling, ResidualBlock, Logit, Inverse)
"""The block types with a bound here; a walk over a flow stops at them (`lipschitz_report`)."""
