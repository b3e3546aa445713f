"""Elementwise bijections: the batch-normalisation flow and the logit pre-processing map.

`BatchNormFlow` (RealNVP, Dinh et al. 2017, section 3.7; MAF, Papamakarios et al. 2017,
section 3.4):

    z = (x - mu) / sqrt(var + eps) * exp(log_gamma) + beta
    log|det| = sum over all dimensions of (log_gamma - 0.5 * log(var + eps))

`Logit` (RealNVP section 4.1): pixel values in level units mapped to the real line,

    p = alpha + (1 - 2 alpha) * (x - low) / scale,   y = log p - log(1 - p)
    log|det| = sum [log(1 - 2 alpha) - log(scale) - log p - log(1 - p)]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowforge.bijections.base import Bijection, spatial_size
from flowforge.errors import ShapeError


class BatchNormFlow(Bijection):
    """Batch normalisation as a bijection, for (B, D) vectors or (B, C, H, W) images.

    Statistics:
      - training mode, forward: the batch mean and (biased) variance, per feature (per channel
        over batch and space for images with ``per="feature"``); the running averages are
        updated as ``running = (1 - momentum) * running + momentum * batch`` (the running
        variance from the unbiased batch variance, as torch.nn.BatchNorm).
      - training mode, inverse: the statistics of the most recent training-mode forward (detached),
        so the inverse exactly undoes the forward just applied; the running averages when no
        forward has run yet.
      - eval mode, both directions: the running averages.

    As in the RealNVP and MAF code, the log-det treats the statistics as constants. In eval mode
    that is exact. In training mode the true Jacobian of the batch map also has terms from mu and
    var depending on every example in the batch; those are dropped (the layer is then an exact
    bijection per example given the batch statistics). Gradients do flow through the batch
    statistics, as in those codes. Statistics are per process: under data parallelism each rank
    normalises with its own batch, as torch.nn.BatchNorm without SyncBatchNorm.

    Args:
        num_features: D or C for ``per="feature"``; for ``per="element"`` the event shape,
            e.g. (C, H, W) (an int means flat (B, D) inputs).
        per: "feature" (per feature / per channel; images multiply the log-det by H * W) or
            "element" (one statistic per entry of the event, as the initial LGF code).
        affine: learn log_gamma and beta (both start at 0); otherwise exp(log_gamma) = 1, beta = 0.
    """

    def __init__(
        self,
        num_features: int | tuple[int, ...],
        momentum: float = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
        per: str = "feature",
    ):
        super().__init__()
        if per not in ("feature", "element"):
            raise ValueError(f"per must be 'feature' or 'element', got {per!r}")
        if per == "feature" and not isinstance(num_features, int):
            raise ValueError(f"per='feature' needs an int num_features, got {num_features!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.event_shape = (num_features,) if isinstance(num_features, int) else tuple(num_features)
        self.num_features = num_features
        self.per = per
        self.momentum = momentum
        self.eps = eps
        self.affine = affine
        stat_shape = (self.event_shape[0],) if per == "feature" else self.event_shape
        self.register_buffer("running_mean", torch.zeros(stat_shape))
        self.register_buffer("running_var", torch.ones(stat_shape))
        if affine:
            self.log_gamma = nn.Parameter(torch.zeros(stat_shape))
            self.beta = nn.Parameter(torch.zeros(stat_shape))
        else:
            self.register_buffer("log_gamma", torch.zeros(stat_shape))
            self.register_buffer("beta", torch.zeros(stat_shape))
        self._last_batch: tuple[Tensor, Tensor] | None = None

    # ----------------------------------------------------------------- shapes and statistics

    def _check(self, x: Tensor) -> None:
        if self.per == "feature":
            c = self.event_shape[0]
            if x.dim() not in (2, 4) or x.shape[1] != c:
                raise ShapeError(f"BatchNormFlow({c}) expects (B, {c}) or (B, {c}, H, W), got {tuple(x.shape)}")
        elif tuple(x.shape[1:]) != self.event_shape:
            raise ShapeError(f"BatchNormFlow(per='element') expects (B, *{self.event_shape}), got {tuple(x.shape)}")

    def _reduce_dims(self, x: Tensor) -> list[int]:
        return [0] + list(range(2, x.dim())) if self.per == "feature" else [0]

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        if self.per == "feature":
            return p.view(1, -1, *([1] * (x.dim() - 2)))
        return p.unsqueeze(0)

    def _positions(self, x: Tensor) -> int:
        """How many entries of one example share each statistic: H * W per channel, else 1."""
        return spatial_size(x) if self.per == "feature" else 1

    @property
    def last_batch_statistics(self) -> tuple[Tensor, Tensor] | None:
        """(mean, var) of the most recent training-mode forward batch, detached; None before one."""
        return self._last_batch

    def _batch_statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        dims = self._reduce_dims(x)
        count = x.numel() // x[0].numel() * self._positions(x)
        if count < 2:
            raise ValueError(
                f"BatchNormFlow in training mode needs more than one value per statistic, got input {tuple(x.shape)}"
            )
        mean = x.mean(dim=dims)
        var = ((x - self._view(mean, x)) ** 2).mean(dim=dims)
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach().to(self.running_mean.dtype))
            unbiased = var.detach() * (count / (count - 1))
            self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
        self._last_batch = (mean.detach(), var.detach())
        return mean, var

    def _inverse_statistics(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and self._last_batch is not None:
            mean, var = self._last_batch
            return mean.to(z), var.to(z)  # to z's device as well: the module may have moved since
        return self.running_mean.to(z), self.running_var.to(z)

    # ----------------------------------------------------------------- the map with fixed statistics

    def _logabsdet(self, var: Tensor, x: Tensor) -> Tensor:
        per_stat = self.log_gamma.to(x.dtype) - 0.5 * torch.log(var + self.eps)
        ld = per_stat.sum() * self._positions(x)
        return ld.expand(x.shape[0])

    def normalise(self, x: Tensor, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """The forward map with the statistics held fixed: what `forward` applies, given its stats."""
        self._check(x)
        mean, var = mean.to(x), var.to(x)
        scale = self.log_gamma.to(x.dtype).exp() * torch.rsqrt(var + self.eps)
        y = (x - self._view(mean, x)) * self._view(scale, x) + self._view(self.beta.to(x.dtype), x)
        return y, self._logabsdet(var, x)

    def denormalise(self, z: Tensor, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """The inverse of `normalise` with the same statistics."""
        self._check(z)
        mean, var = mean.to(z), var.to(z)
        inv_scale = (-self.log_gamma.to(z.dtype)).exp() * torch.sqrt(var + self.eps)
        x = (z - self._view(self.beta.to(z.dtype), z)) * self._view(inv_scale, z) + self._view(mean, z)
        return x, -self._logabsdet(var, z)

    # ----------------------------------------------------------------- the contract

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        if self.training:
            mean, var = self._batch_statistics(x)
        else:
            mean, var = self.running_mean, self.running_var
        return self.normalise(x, mean, var)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z)
        return self.denormalise(z, *self._inverse_statistics(z))

    def train(self, mode: bool = True):
        self._last_batch = None  # a mode switch starts afresh: no stale batch for the inverse
        return super().train(mode)


class Logit(Bijection):
    """Logit pre-processing for dequantised n-bit images (RealNVP section 4.1).

    The input x lies in [low, low + scale), by default [0, 2^n_bits): pixel values in level
    units, x = k + u with k in {0, ..., 2^n - 1} and u ~ U[0, 1). Then

        p = alpha + (1 - 2 alpha) * (x - low) / scale,   y = logit(p)
        log|det| = sum [log(1 - 2 alpha) - log(scale) - log p - log(1 - p)]

    The -log(scale) = -n log 2 per dimension is included, so a model starting with this layer
    has its log-density w.r.t. x in level units, where each discrete value owns a cell of volume
    1: bits/dim against the discrete data is simply -log p(x) / (D log 2), with no further
    constant (do not add `objectives.discretisation_nats`). With ``scale=1.0, low=-0.5`` the
    layer reads the library's model space [-0.5, 0.5) (`data.quantisation`), the log-density
    is w.r.t. that space and `objectives.bits_per_dim` applies as usual.

    alpha is 1e-6 for MNIST / Fashion-MNIST and 0.05 for CIFAR-10 / SVHN in the LGF code.
    ``check_range`` raises on inputs outside [low, low + scale] (costs one host sync per call).
    """

    def __init__(
        self,
        alpha: float,
        n_bits: int = 8,
        scale: float | None = None,
        low: float = 0.0,
        check_range: bool = True,
    ):
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
        if scale is None:
            if not 1 <= n_bits <= 16:
                raise ValueError(f"n_bits must be in 1..16, got {n_bits}")
            scale = float(2**n_bits)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.alpha = float(alpha)
        self.n_bits = n_bits
        self.scale = float(scale)
        self.low = float(low)
        self.check_range = check_range
        # log(1 - 2 alpha) - log(scale): the affine part's log-slope per dimension
        self._log_slope = math.log1p(-2.0 * self.alpha) - math.log(self.scale)

    def _check(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ShapeError(f"Logit expects (B, ...) with at least one event dimension, got {tuple(x.shape)}")

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        if self.check_range:
            lo, hi = torch.stack(torch.aminmax(x.detach())).tolist()  # one host sync
            if not (lo >= self.low and hi <= self.low + self.scale):  # NaN fails too
                raise ValueError(
                    f"Logit expects inputs in [{self.low}, {self.low + self.scale}] "
                    f"(alpha={self.alpha}, scale={self.scale}), got values in [{lo}, {hi}]"
                )
        p = self.alpha + (1.0 - 2.0 * self.alpha) * (x - self.low) / self.scale
        log_p, log_1mp = torch.log(p), torch.log1p(-p)
        y = log_p - log_1mp
        ld = (self._log_slope - log_p - log_1mp).flatten(1).sum(1)
        return y, ld

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z)
        p = torch.sigmoid(z)
        x = (p - self.alpha) / (1.0 - 2.0 * self.alpha) * self.scale + self.low
        ld = -(self._log_slope - F.logsigmoid(z) - F.logsigmoid(-z)).flatten(1).sum(1)
        return x, ld

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, scale={self.scale}, low={self.low}"
