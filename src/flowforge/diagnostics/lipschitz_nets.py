"""Upper bounds on the Lipschitz constant (l2 -> l2) of conditioner networks, for the analytic
block bounds of Behrmann et al. 2021, supplement A (`lipschitz_bounds.py`).

Lip(net) <= the product of its layers' operator norms (1-Lipschitz activations: ReLU, LipSwish,
tanh, ...). Layers:

- linear / 1x1 convolution: the spectral norm of the weight matrix (a 1x1 convolution applies the
  C_out x C_in matrix at every position, so its operator norm on images is that matrix's);
- k x k convolution, stride 1, zero padding p <= k - 1, on H x W inputs (`conv` option):
  "operator" (default): the zero-padded operator's own norm, `conv_operator_norm` — exact (the
  largest eigenvalue of its Gram matrix in float64) when its smaller side has at most
  EXACT_CONV_DIM dimensions, else power iteration (converging from below);
  "fft": a guaranteed upper bound, the norm of the circular convolution on an (H + p) x (W + p)
  grid, max over frequencies f of ||K_hat(f)||_2 (Sedghi et al. 2019, "The singular values of
  convolutional layers", theorem 6). The zero-padded operator is R C E with E the zero embedding
  of the H x W image into the grid and R a restriction to the output positions (both of norm 1),
  as no tap of an output position wraps around into the image on a grid of at least H + p. It is
  10-20 % above the operator norm on 5 x 5 images, less on larger ones;
- Glow's coupling network: its actnorms folded into the convolutions before them (per output
  channel exp(logs)), and the last convolution's gain exp(3 * logs) per output channel; the
  edge-bias maps are constants and do not count;
- spectrally normalised layers (`nets.lipschitz`): the norm of the weight they use,
  W / max(1, sigma / coeff), computed here rather than trusted to the power-iteration buffers.

`out_index` restricts the network's output to some channels (the shift or the scale half of an
affine coupling's h): the last linear layer's rows are selected; elsewhere it is ignored (the
whole output's bound is still valid, only looser).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowforge.bijections.glow_coupling_net import GlowCouplingNet
from flowforge.nets.lipschitz import LipSwish, SpectralNormConv2d, SpectralNormLinear
from flowforge.nets.mlp import MLP
from flowforge.nets.resnet import ResidualBlock as ResNetBlock
from flowforge.nets.resnet import ResNet, ScaledTanh
from flowforge.nets.zero_init import LOGSCALE_FACTOR, LinearZeros, ZeroConv2d

# activation -> Lipschitz constant
_ACTIVATIONS = {nn.ReLU: 1.0, nn.Tanh: 1.0, nn.Sigmoid: 0.25, LipSwish: 1.0, nn.Softplus: 1.0, nn.Identity: 1.0}


CONV_METHODS = ("operator", "fft")
EXACT_CONV_DIM = 2048  # a convolution with a side this small gets its exact norm (Gram matrix, float64)


class UnsupportedLayer(TypeError):
    """A network contains a layer without a Lipschitz bound here."""


def matrix_norm(w: Tensor) -> float:
    """Spectral norm (largest singular value) of a matrix, in float64."""
    return float(torch.linalg.matrix_norm(w.detach().double(), ord=2))


def _padding(p) -> tuple[int, int]:
    return (int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1]))


def conv_norm_bound(weight: Tensor, input_hw: Sequence[int], padding=1) -> float:
    """Upper bound on the l2 operator norm of the stride-1 zero-padded convolution with `weight`
    (C_out, C_in, k_h, k_w) on (C_in, H, W) inputs (module docstring: circulant embedding + FFT)."""
    w = weight.detach().double()
    k_h, k_w = w.shape[-2:]
    p_h, p_w = _padding(padding)
    if k_h == k_w == 1:
        return matrix_norm(w[:, :, 0, 0])
    if p_h > k_h - 1 or p_w > k_w - 1:
        raise UnsupportedLayer(f"padding {padding} > kernel size - 1 ({k_h}x{k_w})")
    n_h, n_w = int(input_hw[0]) + p_h, int(input_hw[1]) + p_w
    n_h, n_w = max(n_h, k_h), max(n_w, k_w)
    spectrum = torch.fft.rfft2(w, s=(n_h, n_w))  # (C_out, C_in, n_h, n_w // 2 + 1): conjugate pairs share norms
    mats = spectrum.permute(2, 3, 0, 1).reshape(-1, *w.shape[:2])
    return float(torch.linalg.matrix_norm(mats, ord=2).max())


def _gram_norm(weight: Tensor, input_hw: Sequence[int], padding, chunk: int = 64) -> float:
    """sigma_max of the convolution K from the Gram matrix of its smaller side (K^T K or K K^T),
    built column by column by K and its adjoint (the stride-1 transposed convolution)."""
    h, w = int(input_hw[0]), int(input_hw[1])
    out_hw = F.conv2d(torch.zeros(1, weight.shape[1], h, w, dtype=weight.dtype), weight, padding=padding).shape[-2:]
    n_in, n_out = weight.shape[1] * h * w, weight.shape[0] * out_hw[0] * out_hw[1]
    if n_in <= n_out:
        shape, there = (weight.shape[1], h, w), lambda e: F.conv2d(e, weight, padding=padding)
        back = lambda u: F.conv_transpose2d(u, weight, padding=padding)
    else:
        shape, there = (weight.shape[0], *out_hw), lambda e: F.conv_transpose2d(e, weight, padding=padding)
        back = lambda u: F.conv2d(u, weight, padding=padding)
    n = math.prod(shape)
    eye = torch.eye(n, dtype=weight.dtype)
    gram = torch.cat([back(there(eye[i:i + chunk].view(-1, *shape))).reshape(-1, n) for i in range(0, n, chunk)])
    return float(torch.linalg.eigvalsh((gram + gram.T) / 2).max().clamp_min(0).sqrt())


def conv_operator_norm(weight: Tensor, input_hw: Sequence[int], padding=1, max_iters: int = 5000,
                       rtol: float = 1e-13, seed: int = 0) -> float:
    """The l2 operator norm of the stride-1 zero-padded convolution itself on (C_in, H, W) inputs:
    exact (float64 eigenvalue of the Gram matrix) when its smaller side has at most
    EXACT_CONV_DIM dimensions, else by power iteration v <- K^T K v / ||K^T K v||, sigma = ||K v||
    until sigma changes by at most `rtol` relative in 50 iterations (at most `max_iters`): an
    estimate from below, slow where the top two singular values are close (0.1 % apart: 1e-5
    relative error after 1000 iterations)."""
    w = weight.detach().double()
    h, wd = int(input_hw[0]), int(input_hw[1])
    if min(w.shape[0], w.shape[1]) * h * wd <= EXACT_CONV_DIM:
        return _gram_norm(w, (h, wd), padding)
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(1, w.shape[1], h, wd, generator=gen, dtype=torch.float64)
    v = v / v.norm()
    history: list[float] = []
    for _ in range(max_iters):
        u = F.conv2d(v, w, padding=padding)
        g = F.conv_transpose2d(u, w, padding=padding)
        history.append(float(u.norm()))
        v = g / g.norm().clamp_min(1e-300)
        if len(history) > 50 and history[-1] - history[-51] <= rtol * history[-1]:
            break
    return history[-1]


def _conv_bound(weight: Tensor, conv: nn.Module, in_shape: Sequence[int], method: str) -> float:
    stride, dilation, groups = getattr(conv, "stride", 1), getattr(conv, "dilation", 1), getattr(conv, "groups", 1)
    if _padding(stride) != (1, 1) or _padding(dilation) != (1, 1) or groups != 1 \
            or getattr(conv, "padding_mode", "zeros") != "zeros" or isinstance(getattr(conv, "padding", 0), str):
        raise UnsupportedLayer(f"{type(conv).__name__}: only stride-1, undilated, ungrouped, zero-padded convolutions")
    if method == "operator" and weight.shape[-1] * weight.shape[-2] > 1:
        return conv_operator_norm(weight, in_shape[-2:], conv.padding)
    return conv_norm_bound(weight, in_shape[-2:], conv.padding)


def _rows(weight: Tensor, out_index) -> Tensor:
    return weight if out_index is None else weight[out_index]


def _affine_layer_bound(m: nn.Module, in_shape: Sequence[int], out_index, conv: str) -> float | None:
    """The bound of a single linear / convolutional layer, or None when `m` is not one."""
    if isinstance(m, ZeroConv2d):
        gain = (m.logs.detach().double() * LOGSCALE_FACTOR).exp().view(-1, 1, 1, 1)
        return _conv_bound(_rows(m.conv.weight.double() * gain, out_index), m.conv, in_shape, conv)
    if isinstance(m, LinearZeros):
        gain = (m.logs.detach().double() * LOGSCALE_FACTOR).exp().view(-1, 1)
        return matrix_norm(_rows(m.linear.weight.double() * gain, out_index))
    if isinstance(m, SpectralNormConv2d):
        return _conv_bound(_rows(m.normalised_weight(), out_index), m, in_shape, conv)
    if isinstance(m, SpectralNormLinear):
        return matrix_norm(_rows(m.normalised_weight(), out_index))
    if isinstance(m, nn.Conv2d):
        return _conv_bound(_rows(m.weight, out_index), m, in_shape, conv)
    if isinstance(m, nn.Linear):
        return matrix_norm(_rows(m.weight, out_index))
    return None


def _glow_net_bound(net: GlowCouplingNet, in_shape: Sequence[int], out_index, conv: str) -> float:
    scale_in = net.norm_in.log_scale.detach().double().exp().view(-1, 1, 1, 1)
    scale_mid = net.norm_mid.log_scale.detach().double().exp().view(-1, 1)
    # the weights on x's channels: context channels (GlowCouplingNet's context_dim) are constant in x
    weight = net.conv_in.weight[:, : in_shape[0]]
    first = _conv_bound(weight.double() * scale_in, net.conv_in, in_shape, conv)
    mid = matrix_norm(net.conv_mid.weight.double()[:, :, 0, 0] * scale_mid)
    hidden_shape = (net.conv_in.out_channels, *in_shape[-2:])
    return first * mid * _affine_layer_bound(net.conv_out, hidden_shape, out_index, conv)


@torch.no_grad()
def _out_shape(m: nn.Module, in_shape: Sequence[int]) -> tuple[int, ...]:
    p = next(m.parameters(), None)
    dtype = p.dtype if p is not None else torch.float64
    return tuple(m(torch.zeros(1, *in_shape, dtype=dtype, device=p.device if p is not None else None)).shape[1:])


def lipschitz_bound(net: nn.Module, in_shape: Sequence[int], out_index=None, conv: str = "operator") -> float:
    """An upper bound on Lip(net) w.r.t. the l2 norm on inputs of shape `in_shape` (one example);
    raises UnsupportedLayer for a layer it has no bound for. Put the network in eval mode.
    `conv`: "operator" (each k x k convolution's own operator norm, `conv_operator_norm`) or
    "fft" (the circulant-embedding upper bound, `conv_norm_bound`: guaranteed, looser)."""
    if conv not in CONV_METHODS:
        raise ValueError(f"conv must be one of {CONV_METHODS}, got {conv!r}")
    layer = _affine_layer_bound(net, in_shape, out_index, conv)
    if layer is not None:
        return layer
    if isinstance(net, GlowCouplingNet):
        return _glow_net_bound(net, in_shape, out_index, conv)
    if isinstance(net, MLP):
        hidden_shape = _out_shape(net.body, in_shape)
        return lipschitz_bound(net.body, in_shape, conv=conv) * lipschitz_bound(net.output, hidden_shape, out_index, conv)
    if isinstance(net, ResNet):
        return lipschitz_bound(net.net, in_shape, conv=conv)
    if isinstance(net, ResNetBlock):
        return 1.0 + lipschitz_bound(net.body, in_shape, conv=conv)
    if isinstance(net, ScaledTanh):
        return float(net.weight.detach().abs().max())
    if isinstance(net, nn.BatchNorm2d | nn.BatchNorm1d):
        if net.training or net.running_var is None:
            raise UnsupportedLayer("batch normalisation in training mode depends on the batch")
        gamma = net.weight.detach().double() if net.weight is not None else torch.ones_like(net.running_var)
        return float((gamma.abs() / (net.running_var.double() + net.eps).sqrt()).max())
    if isinstance(net, nn.LeakyReLU):
        return max(1.0, abs(net.negative_slope))
    if isinstance(net, nn.ELU):
        return max(1.0, float(net.alpha))
    for kind, lip in _ACTIVATIONS.items():
        if isinstance(net, kind):
            return lip
    if isinstance(net, nn.Sequential):
        total, shape = 1.0, tuple(in_shape)
        for i, m in enumerate(net):
            last = i == len(net) - 1
            total *= lipschitz_bound(m, shape, out_index if last else None, conv)
            if not last:
                shape = _out_shape(m, shape)
        return total
    raise UnsupportedLayer(f"no Lipschitz bound for layer {type(net).__name__}")


def safe_lipschitz_bound(net: nn.Module, in_shape: Sequence[int], out_index=None,
                         conv: str = "operator") -> tuple[float, str]:
    """(bound, "") or (inf, the reason) when a layer is unsupported."""
    try:
        return lipschitz_bound(net, in_shape, out_index, conv), ""
    except UnsupportedLayer as err:
        return math.inf, str(err)
