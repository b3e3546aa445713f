"""The invertible residual block (Behrmann et al. 2019, i-ResNet; Chen et al. 2019, Residual Flows):

    y = x + g(x),   Lip(g) < 1 (spectrally normalised layers, `nets.lipschitz`)
    log|det dy/dx| = log det(I + J_g(x))

Log-det, chosen per mode (`logdet` in training mode, `eval_logdet` in eval mode):
  - "estimator": the unbiased Russian-roulette estimator (`RouletteEstimator`; n_exact_terms exact
    terms, n ~ Geometric / Poisson, Neumann-series gradient). Training uses it; evaluation with
    it uses `eval_exact_terms` (20, as the reference) exact terms — still an unbiased, random
    estimate of log p, not an exact value.
  - "exact": brute force, the whole per-example Jacobian by D backward passes and slogdet
    (2-D / small inputs; the contract test).

Inverse (i-ResNet, algorithm 1): the fixed point of x = y - g(x), a contraction, from
x_0 = y - g(y), iterated until every coordinate moved by at most `inverse_atol + inverse_rtol
* |y|` in one step, at most `inverse_max_iter` steps; the error to the true inverse is then at
most Lip(g) / (1 - Lip(g)) times that step (49x for Lip(g) = 0.98). Non-convergence (or
non-finite values, which stop the iteration at once and are kept in the output) warns with
`ResidualInverseWarning` and is recorded in `last_inverse`.
In "exact" mode `newton_steps` (2) Newton steps with the exact Jacobian follow (the inverse is
then exact to rounding, and its gradient is the implicit one, (I + J_g)^-1; 0 keeps the plain
fixed point). In "estimator" mode (and exact mode without Newton steps), when
gradients are needed, the last `inverse_grad_steps` fixed-point steps are differentiated (a
truncated Neumann series for (I + J_g)^-1, as the public attack code's 4-iteration inverse) —
the gradient through the inverse is then approximate (the steps run without grad as well, so
both give the same value).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection, refuse_context
from flowforge.bijections.residual_logdet import RouletteEstimator, exact_logdet
from flowforge.errors import ShapeError
from flowforge.nets.lipschitz import update_lipschitz

LOGDET_MODES = ("estimator", "exact")


class ResidualInverseWarning(UserWarning):
    """The fixed-point inverse of a residual block stopped before reaching its tolerance."""


class ResidualBlock(Bijection):
    """y = x + net(x) for inputs of shape (B, *event_shape); `net` must be contractive
    (`nets.lipschitz.lipschitz_mlp` / `lipschitz_conv_net`)."""

    def __init__(self, net: nn.Module, event_shape: Sequence[int], logdet: str = "estimator",
                 eval_logdet: str = "estimator", n_exact_terms: int = 2, eval_exact_terms: int = 20,
                 n_dist: str = "geometric", geom_p: float = 0.5, poisson_lambda: float = 2.0,
                 neumann_grad: bool = True, inverse_atol: float = 1e-5, inverse_rtol: float = 1e-5,
                 inverse_max_iter: int = 1000, inverse_grad_steps: int = 8, newton_steps: int = 2):
        super().__init__()
        for name, mode in (("logdet", logdet), ("eval_logdet", eval_logdet)):
            if mode not in LOGDET_MODES:
                raise ValueError(f"{name} must be one of {LOGDET_MODES}, got {mode!r}")
        self.net = net
        self.event_shape = tuple(int(s) for s in event_shape)
        self.logdet_mode, self.eval_logdet_mode = logdet, eval_logdet
        common = dict(n_dist=n_dist, geom_p=geom_p, poisson_lambda=poisson_lambda, neumann_grad=neumann_grad)
        self.train_estimator = RouletteEstimator(n_exact_terms, **common)
        self.eval_estimator = RouletteEstimator(eval_exact_terms, **common)
        self.inverse_atol, self.inverse_rtol = float(inverse_atol), float(inverse_rtol)
        if inverse_max_iter < 1 or inverse_grad_steps < 0 or newton_steps < 0:
            raise ValueError("need inverse_max_iter >= 1, inverse_grad_steps >= 0 and newton_steps >= 0")
        self.inverse_max_iter, self.inverse_grad_steps = int(inverse_max_iter), int(inverse_grad_steps)
        self.newton_steps = int(newton_steps)
        self.last_inverse: dict = {}
        self._skip_logdet = False

    @property
    def mode(self) -> str:
        return self.logdet_mode if self.training else self.eval_logdet_mode

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.event_shape or x.dim() < 2:
            raise ShapeError(f"ResidualBlock expects (B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")

    def _g_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(g(x), log det(I + J_g(x)), I + J_g(x) in exact mode else None), with a graph only when
        gradients are enabled; the log-det needs autograd even under no_grad (density grids)."""
        graph = torch.is_grad_enabled()
        with torch.enable_grad():
            xin = x if (graph and x.requires_grad) else x.detach().requires_grad_(True)
            gx = self.net(xin)
            if self.mode == "exact":
                ld, full = exact_logdet(gx, xin, create_graph=graph)
            else:
                estimator = self.train_estimator if self.training else self.eval_estimator
                ld, full = estimator(gx, xin, create_graph=graph), None
        if not graph:
            gx, ld = gx.detach(), ld.detach()
        return gx, ld, full

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        refuse_context(self, context)
        self._check(x)
        if self.training:
            update_lipschitz(self.net)
        if self._skip_logdet:
            return x + self.net(x), torch.full((x.shape[0],), float("nan"), dtype=x.dtype, device=x.device)
        gx, ld, _ = self._g_and_logdet(x)
        return x + gx, ld

    @torch.no_grad()
    def _fixed_point(self, y: Tensor) -> Tensor:
        x = y - self.net(y)
        tol = self.inverse_atol + self.inverse_rtol * y.abs()
        converged, moved, it = False, torch.zeros(()), 0
        for it in range(1, self.inverse_max_iter + 1):
            x_new = y - self.net(x)
            moved = (x_new - x).abs()
            x = x_new
            if bool((moved <= tol).all()):
                converged = True
                break
            if not bool(torch.isfinite(moved).all()):
                break  # NaN / inf input or overflow: no iteration can converge; kept, and warned below
        step = float(moved.max())
        self.last_inverse = {"iterations": it, "converged": converged, "max_step": step}
        if not converged:
            warnings.warn(f"ResidualBlock inverse: no convergence after {it} fixed-point iterations "
                          f"(largest last step {step:.3g}, tolerance atol={self.inverse_atol}, "
                          f"rtol={self.inverse_rtol})", ResidualInverseWarning, stacklevel=3)
        return x

    def _newton(self, y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Newton steps on x + g(x) = y with the exact Jacobian; the last one carries the implicit
        gradient. Returns (x, log det(I + J_g) at the last linearisation point)."""
        graph = torch.is_grad_enabled()
        ld = None
        for i in range(self.newton_steps):
            last = i == self.newton_steps - 1
            with torch.set_grad_enabled(graph and last):
                gx, ld, full = self._g_and_logdet(x.detach())
                residual = (x.detach() + gx - y).reshape(x.shape[0], -1, 1)
                x = x.detach() - torch.linalg.solve(full if (graph and last) else full.detach(), residual).view_as(x)
        return x, ld

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        refuse_context(self, context)
        self._check(z)
        x = self._fixed_point(z)
        if self._skip_logdet:
            for _ in range(self.inverse_grad_steps):
                x = z - self.net(x)
            return x, torch.full((z.shape[0],), float("nan"), dtype=z.dtype, device=z.device)
        if self.mode == "exact" and self.newton_steps:
            x, ld = self._newton(z, x)
            return x, -ld
        for _ in range(self.inverse_grad_steps):  # also without grad: the same value either way
            x = z - self.net(x)
        _, ld, _ = self._g_and_logdet(x)
        return x, -ld

    def extra_repr(self) -> str:
        return (f"event_shape={self.event_shape}, logdet={self.logdet_mode}, eval_logdet={self.eval_logdet_mode}, "
                f"inverse_atol={self.inverse_atol}, inverse_rtol={self.inverse_rtol}")


@contextmanager
def logdet_skipped(module: nn.Module) -> Iterator[None]:
    """Inside the block, every ResidualBlock in `module` maps without computing its log-det and
    returns NaN in its place (never a silent zero): for diagnostics and attacks that need only the
    map F and its inverse, where the estimator's many Jacobian products would dominate the cost.
    The inverse is the plain fixed point (plus `inverse_grad_steps` steps), without Newton steps."""
    blocks = [m for m in module.modules() if isinstance(m, ResidualBlock)]
    for b in blocks:
        b._skip_logdet = True
    try:
        yield
    finally:
        for b in blocks:
            b._skip_logdet = False
