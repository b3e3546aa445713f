"""log det(I + J_g) of a residual block y = x + g(x) with Lip(g) < 1.

Two ways:

- `exact_logdet`: the whole Jacobian J_g per example by D vector-Jacobian products, then slogdet
  (brute force; for small inputs — 2-D data, tests).
- `RouletteEstimator`: the unbiased Russian-roulette estimator of Residual Flows (Chen et al.
  2019, eq. 6; NOTES d.7):

      log det(I + J) = E_{n, v} [ sum_{k=1}^{N} (-1)^{k+1} / k * v^T J^k v / P(N >= k) ],
      N = n + n_exact_terms,  v ~ N(0, I),  n ~ Geometric(p) on {1, 2, ...} or Poisson(lambda)

  (P(N >= k) = 1 for k <= n_exact_terms). v^T J^k comes from k vector-Jacobian products.
  With `neumann_grad` the gradient comes from the Neumann series (Residual Flows, eq. 8):
  w = v + sum_{k=1}^{N} (-1)^k v^T J^k / P(N >= k) is built without a graph and the surrogate
  (w^T J) v is differentiated — an unbiased gradient with memory independent of N. The value
  returned is always the unbiased log-det estimate (the surrogate only carries the gradient).
  One n is drawn per call (shared by the batch), as the reference code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

N_DISTRIBUTIONS = ("geometric", "poisson")


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _vjp(gx: Tensor, x: Tensor, v: Tensor, create_graph: bool) -> Tensor:
    return torch.autograd.grad(gx, x, v, retain_graph=True, create_graph=create_graph)[0]


def jacobian_of_residual(gx: Tensor, x: Tensor, create_graph: bool) -> Tensor:
    """(B, D, D) per-example Jacobians of g (g acts on each example alone) by D VJPs."""
    b, d = x.shape[0], x[0].numel()
    rows = []
    for i in range(d):
        e = torch.zeros(b, d, dtype=gx.dtype, device=gx.device)
        e[:, i] = 1.0
        rows.append(_flat(_vjp(gx, x, e.view_as(gx), create_graph)))
    return torch.stack(rows, dim=1)


def exact_logdet(gx: Tensor, x: Tensor, create_graph: bool) -> tuple[Tensor, Tensor]:
    """(log|det(I + J_g)| per example, I + J_g) — brute force, D backward passes."""
    jac = jacobian_of_residual(gx, x, create_graph)
    eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
    full = eye + jac
    return torch.linalg.slogdet(full)[1], full


@dataclass
class RouletteEstimator:
    """The Russian-roulette log-det estimator (see the module docstring)."""

    n_exact_terms: int = 2
    n_dist: str = "geometric"
    geom_p: float = 0.5
    poisson_lambda: float = 2.0
    neumann_grad: bool = True

    def __post_init__(self) -> None:
        if self.n_dist not in N_DISTRIBUTIONS:
            raise ValueError(f"n_dist must be one of {N_DISTRIBUTIONS}, got {self.n_dist!r}")
        if self.n_exact_terms < 0:
            raise ValueError(f"n_exact_terms must be >= 0, got {self.n_exact_terms}")
        if not 0.0 < self.geom_p < 1.0:
            raise ValueError(f"geom_p must be in (0, 1), got {self.geom_p}")
        if not self.poisson_lambda > 0:
            raise ValueError(f"poisson_lambda must be positive, got {self.poisson_lambda}")

    def sample_n(self) -> int:
        """One draw of n (global torch RNG)."""
        if self.n_dist == "geometric":
            u = torch.rand(()).item()  # inverse CDF of Geometric(p) on {1, 2, ...}
            return max(1, math.ceil(math.log1p(-u) / math.log1p(-self.geom_p)))
        return int(torch.poisson(torch.tensor(float(self.poisson_lambda))).item())

    def prob_at_least(self, k: int) -> float:
        """P(N >= k) for N = n + n_exact_terms."""
        m = k - self.n_exact_terms
        if m <= 0:
            return 1.0
        if self.n_dist == "geometric":
            return (1.0 - self.geom_p) ** (m - 1)
        lam = self.poisson_lambda
        return 1.0 - math.exp(-lam) * sum(lam**i / math.factorial(i) for i in range(m))

    def __call__(self, gx: Tensor, x: Tensor, create_graph: bool, n: int | None = None) -> Tensor:
        """The estimate per example; differentiable (to g's parameters and x) when create_graph."""
        terms = (self.sample_n() if n is None else n) + self.n_exact_terms
        v = torch.randn_like(x)
        v_flat = _flat(v)
        basic_graph = create_graph and not self.neumann_grad
        vjp, value = v, torch.zeros(x.shape[0], dtype=gx.dtype, device=gx.device)
        neumann = v.detach().clone()
        for k in range(1, terms + 1):
            vjp = _vjp(gx, x, vjp, basic_graph)
            weight = 1.0 / self.prob_at_least(k)
            value = value + (-1) ** (k + 1) / k * weight * (_flat(vjp) * v_flat).sum(1)
            if create_graph and self.neumann_grad:
                neumann = neumann + (-1) ** k * weight * vjp.detach()
        if not (create_graph and self.neumann_grad):
            return value
        # w^T J_g v with w fixed: d log det(I + J) = sum_j (-1)^j tr(J^j dJ); term j is kept when
        # N >= j and weighted by 1 / P(N >= j), so the gradient is unbiased (the reference's choice)
        surrogate = (_flat(_vjp(gx, x, neumann, True)) * v_flat).sum(1)
        return surrogate + (value.detach() - surrogate.detach())
