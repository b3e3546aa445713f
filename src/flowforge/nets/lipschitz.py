"""Lipschitz-constrained layers for residual flows (Behrmann et al. 2019, i-ResNet, section 3;
Chen et al. 2019, Residual Flows, sections 3.1 and 4; NOTES d.7).

Soft spectral normalisation: sigma = u^T W v is estimated by power iteration on persistent
buffers u, v, and the weight used is W / max(1, sigma / coeff), so the layer's operator 2-norm is
at most `coeff` (0.98 in the Residual Flows image code) up to the power iteration's accuracy.
For a k x k convolution u and v live on the whole (C, H, W) output / input, so sigma is the true
l2 operator norm of the convolution on that image size (the reference `InducedNormConv2d` with
2-norms), iterated with `conv2d` and its adjoint `conv_transpose2d`.

The buffers are refreshed by `update_lipschitz(module)` (power iteration to the tolerance
atol = rtol = 1e-3, at most `max_iters`), never inside a layer's own forward, so a map stays the
same function while a residual block inverts it by fixed-point iteration. `ResidualBlock` calls
it at the start of each training-mode forward (the reference refreshes after every optimiser step;
the first forward after a step sees the same weights). Once converged the refresh is idempotent
(an iterate within tolerance of the stored one is not written), so repeated forwards of the same
weights give the same function.

`LipSwish` (Residual Flows, section 4.2): x * sigmoid(beta x) / 1.1 with beta = softplus(b),
b learnable (init 0.5): 1-Lipschitz for every beta, with a non-vanishing second derivative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SN_COEFF = 0.98
SN_TOL = 1e-3
SN_MAX_ITERS = 200


def _normalise(t: Tensor) -> Tensor:
    return t / t.norm().clamp_min(1e-12)


def _close(new: Tensor, old: Tensor, atol: float, rtol: float) -> bool:
    # the reference criterion: RMS change below atol + rtol * max |entry|
    err = (new - old).norm() / new.numel() ** 0.5
    return bool(err <= atol + rtol * new.abs().max())


class _SpectralNormalised(nn.Module):
    """Shared by the linear and the convolutional layer: subclasses give `_matvec(v, weight)`
    (W v), `_adjoint(u, weight)` (W^T u) and the buffers `u`, `v`."""

    weight: Tensor
    u: Tensor
    v: Tensor

    def _setup(self, coeff: float, atol: float, rtol: float, max_iters: int) -> None:
        if not 0.0 < coeff:
            raise ValueError(f"coeff must be positive, got {coeff}")
        self.coeff, self.atol, self.rtol, self.max_iters = float(coeff), float(atol), float(rtol), int(max_iters)
        self.update_lipschitz()

    def _matvec(self, v: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def _adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def update_lipschitz(self, max_iters: int | None = None) -> int:
        """Power iteration on u, v until both change by less than the tolerance; returns the
        number of iterations (0 when the stored u, v already are within tolerance)."""
        w = self.weight.detach()
        u, v = self.u, self.v
        for i in range(self.max_iters if max_iters is None else max_iters):
            u_new = _normalise(self._matvec(v, w))
            v_new = _normalise(self._adjoint(u_new, w))
            if _close(u_new, u, self.atol, self.rtol) and _close(v_new, v, self.atol, self.rtol):
                break
            u, v = u_new, v_new
        else:
            i = self.max_iters if max_iters is None else max_iters
        self.u.copy_(u)
        self.v.copy_(v)
        return i

    def sigma(self, weight: Tensor | None = None) -> Tensor:
        """The spectral-norm estimate u^T W v (differentiable in W)."""
        weight = self.weight if weight is None else weight
        return (self.u * self._matvec(self.v, weight)).sum()

    def normalised_weight(self) -> Tensor:
        """W / max(1, sigma / coeff)."""
        factor = torch.clamp(self.sigma() / self.coeff, min=1.0)
        return self.weight / factor


class SpectralNormLinear(_SpectralNormalised):
    """A linear layer with operator 2-norm at most `coeff` (soft spectral normalisation)."""

    def __init__(self, in_features: int, out_features: int, coeff: float = SN_COEFF, atol: float = SN_TOL,
                 rtol: float = SN_TOL, max_iters: int = SN_MAX_ITERS):
        super().__init__()
        layer = nn.Linear(in_features, out_features)  # torch's default initialisation
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone())
        self.register_buffer("u", _normalise(torch.randn(out_features)))
        self.register_buffer("v", _normalise(torch.randn(in_features)))
        self._setup(coeff, atol, rtol, max_iters)

    def _matvec(self, v: Tensor, weight: Tensor) -> Tensor:
        return weight @ v

    def _adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        return weight.t() @ u

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalised_weight(), self.bias)


class SpectralNormConv2d(_SpectralNormalised):
    """A stride-1, 'same'-padded convolution whose l2 operator norm on (in_channels, *input_hw)
    images is at most `coeff`; u, v are whole images (the reference's induced-norm layer). A 1x1
    convolution acts on each position alike, so its u, v are the C_out x C_in matrix's."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, input_hw: tuple[int, int],
                 coeff: float = SN_COEFF, atol: float = SN_TOL, rtol: float = SN_TOL, max_iters: int = SN_MAX_ITERS):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd ('same' padding), got {kernel_size}")
        layer = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone())
        self.padding = kernel_size // 2
        hw = (1, 1) if kernel_size == 1 else tuple(int(s) for s in input_hw)
        self.register_buffer("u", _normalise(torch.randn(1, out_channels, *hw)))
        self.register_buffer("v", _normalise(torch.randn(1, in_channels, *hw)))
        self._setup(coeff, atol, rtol, max_iters)

    def _matvec(self, v: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(v, weight, padding=self.padding)

    def _adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        return F.conv_transpose2d(u, weight, padding=self.padding)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.normalised_weight(), self.bias, padding=self.padding)


class LipSwish(nn.Module):
    """x * sigmoid(softplus(b) * x) / 1.1: 1-Lipschitz (Residual Flows, section 4.2)."""

    def __init__(self, init: float = 0.5):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(F.softplus(self.beta) * x) / 1.1


def update_lipschitz(module: nn.Module, max_iters: int | None = None) -> int:
    """Refresh u, v of every spectrally normalised layer inside `module`; returns the largest
    number of power iterations any layer needed."""
    counts = [m.update_lipschitz(max_iters) for m in module.modules() if isinstance(m, _SpectralNormalised)]
    return max(counts, default=0)


def lipschitz_mlp(dim: int, hidden: tuple[int, ...] | list[int], coeff: float = SN_COEFF) -> nn.Sequential:
    """g for flat data (the reference's 2-D / tabular net): LipSwish -> SN linear -> ... -> SN
    linear back to `dim` (pre-activation, so g's Lipschitz constant is at most coeff)."""
    layers: list[nn.Module] = []
    width = dim
    for h in [*hidden, dim]:
        layers += [LipSwish(), SpectralNormLinear(width, h, coeff)]
        width = h
    return nn.Sequential(*layers)


def lipschitz_conv_net(channels: int, hidden: int, input_hw: tuple[int, int], coeff: float = SN_COEFF) -> nn.Sequential:
    """g for images (Residual Flows' block): LipSwish -> SN conv3x3(C->hidden) -> LipSwish ->
    SN conv1x1(hidden->hidden) -> LipSwish -> SN conv3x3(hidden->C)."""
    return nn.Sequential(
        LipSwish(), SpectralNormConv2d(channels, hidden, 3, input_hw, coeff),
        LipSwish(), SpectralNormConv2d(hidden, hidden, 1, input_hw, coeff),
        LipSwish(), SpectralNormConv2d(hidden, channels, 3, input_hw, coeff),
    )
