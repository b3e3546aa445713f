"""Channel permutations between coupling layers (Glow, section 3.2 and figure 3's comparison).

`ReversePermutation` and `ShufflePermutation` are fixed; `InvertibleConv1x1` learns a full
C x C matrix W (log|det| = H*W*log|det W|, taken in float64) and `InvertibleConv1x1LU` learns
W = P L (U + diag(sign(s) exp(log|s|))) so that log|det| = H*W*sum(log|s|) costs O(C).
All act on dim 1 of (B, C, H, W) images or (B, C) vectors. The 1x1 convolutions compute their
inverse weight in float64 and, in eval mode, cache it until the weights change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowforge.bijections.base import Bijection, logdet_dtype, spatial_size, zero_logdet
from flowforge.errors import ShapeError


def _apply_matrix(x: Tensor, w: Tensor) -> Tensor:
    """Multiply every channel vector of x (dim 1) by w: a 1x1 convolution for images."""
    w = w.to(x.dtype)
    if x.dim() == 2:
        return x @ w.T
    return F.conv2d(x, w.view(*w.shape, 1, 1))


def _check_channels(x: Tensor, c: int, name: str) -> None:
    if x.dim() not in (2, 4) or x.shape[1] != c:
        raise ShapeError(f"{name}({c}) expects (B, {c}) or (B, {c}, H, W), got {tuple(x.shape)}")


class _FixedPermutation(Bijection):
    def __init__(self, perm: Tensor):
        super().__init__()
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_channels(x, len(self.perm), type(self).__name__)
        return x[:, self.perm], zero_logdet(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_channels(z, len(self.perm), type(self).__name__)
        return z[:, self.inverse_perm], zero_logdet(z)


class ReversePermutation(_FixedPermutation):
    """Reverse the channel order (RealNVP's choice; Glow's 'reverse' baseline)."""

    def __init__(self, num_channels: int):
        super().__init__(torch.arange(num_channels - 1, -1, -1))


class ShufflePermutation(_FixedPermutation):
    """A fixed random channel shuffle drawn once from `seed` (Glow's 'shuffle' baseline)."""

    def __init__(self, num_channels: int, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        super().__init__(torch.randperm(num_channels, generator=gen))


def random_rotation(num_channels: int, seed: int) -> Tensor:
    """A random orthogonal matrix (Q of the QR of a Gaussian matrix), as the public Glow code."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(num_channels, num_channels, generator=gen, dtype=torch.float64))
    return q


class _CachedInverse(Bijection):
    """Caches the float64 inverse weight in eval mode, keyed on the parameters' versions."""

    def _weight64(self) -> Tensor:
        raise NotImplementedError

    def _inverse64(self) -> Tensor:
        return torch.linalg.inv(self._weight64())

    def _param_versions(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def inverse_weight(self) -> Tensor:
        if self.training or torch.is_grad_enabled():
            return self._inverse64()
        if torch.compiler.is_compiling() and getattr(self, "_cache", None) is not None:
            # a compiled pass reads the cache as a tensor: its caller refreshes it first
            # (refresh_inverse_caches), as the version check below cannot be traced
            return self._cache
        key = self._param_versions()
        if getattr(self, "_cache_key", None) != key:
            self._cache = self._inverse64()
            self._cache_key = key
        return self._cache

    def train(self, mode: bool = True):
        self._cache_key = None
        return super().train(mode)


def refresh_inverse_caches(model: nn.Module) -> None:
    """Bring every cached inverse weight in `model` up to date (eval mode, no gradients)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _CachedInverse) and not m.training:
                m.inverse_weight()


class InvertibleConv1x1(_CachedInverse):
    """Invertible 1x1 convolution with an unconstrained weight (Glow eq. 9), random rotation init."""

    def __init__(self, num_channels: int, seed: int = 0):
        super().__init__()
        self.num_channels = num_channels
        self.weight = nn.Parameter(random_rotation(num_channels, seed).float())

    def _weight64(self) -> Tensor:
        return self.weight.double()

    def _logabsdet(self, x: Tensor) -> Tensor:
        return torch.linalg.slogdet(self._weight64())[1] * spatial_size(x)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_channels(x, self.num_channels, "InvertibleConv1x1")
        ld = self._logabsdet(x).to(logdet_dtype(x))
        return _apply_matrix(x, self.weight), ld.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_channels(z, self.num_channels, "InvertibleConv1x1")
        ld = -self._logabsdet(z).to(logdet_dtype(z))
        return _apply_matrix(z, self.inverse_weight()), ld.expand(z.shape[0])


class InvertibleConv1x1LU(_CachedInverse):
    """Invertible 1x1 convolution in LU form (Glow eq. 10): W = P L (U + diag(sign_s * exp(log_s))).

    P and sign_s are fixed buffers; L is unit lower-triangular, U strictly upper-triangular and
    log_s are learned. log|det W| = sum(log_s).
    """

    def __init__(self, num_channels: int, seed: int = 0):
        super().__init__()
        self.num_channels = num_channels
        p, lower, upper = torch.linalg.lu(random_rotation(num_channels, seed))
        s = torch.diagonal(upper)
        self.register_buffer("perm_matrix", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(num_channels, num_channels), -1))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(s.abs()).float())

    def _factors64(self) -> tuple[Tensor, Tensor, Tensor]:
        eye = torch.eye(self.num_channels, dtype=torch.float64, device=self.log_s.device)
        mask = self.lower_mask.double()
        lower = self.lower.double() * mask + eye
        upper = self.upper.double() * mask.T + torch.diag(self.sign_s.double() * self.log_s.double().exp())
        return self.perm_matrix.double(), lower, upper

    def _weight64(self) -> Tensor:
        p, lower, upper = self._factors64()
        return p @ lower @ upper

    def _inverse64(self) -> Tensor:
        p, lower, upper = self._factors64()
        eye = torch.eye(self.num_channels, dtype=torch.float64, device=p.device)
        lower_inv = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
        upper_inv = torch.linalg.solve_triangular(upper, eye, upper=True)
        return upper_inv @ lower_inv @ p.T

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_channels(x, self.num_channels, "InvertibleConv1x1LU")
        w = self._weight64()
        ld = (self.log_s.sum() * spatial_size(x)).to(logdet_dtype(x))
        return _apply_matrix(x, w), ld.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_channels(z, self.num_channels, "InvertibleConv1x1LU")
        ld = (-self.log_s.sum() * spatial_size(z)).to(logdet_dtype(z))
        return _apply_matrix(z, self.inverse_weight()), ld.expand(z.shape[0])
