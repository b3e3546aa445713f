"""The invertibility attack (Behrmann et al. 2021, section 6, figure 11; public code
`inv-attacks-and-2D-flows/attack_celebA.py`, NOTES d.5): projected signed-gradient ascent on the
reconstruction error ||x' - F^-1(F(x'))||_2 with x' confined to the dequantisation cell of the
image, i.e. inputs the model was trained on a density over.

    x_nat = centre of the n-bit cell of x,   eps = 0.5 / 2^n_bits (the cell's half-width)
    x_0   = clip(x_nat + U(-eps, eps))       (random start)
    x_k+1 = clip(x_k + a * sign(grad_x ||x_k - F^-1(F(x_k))||))      a = 5e-4, 200 steps
    clip  = projection on [x_nat - eps, x_nat + eps], then on the data range

Each example's ascent is independent (the public code's batch-norm loss has the same signs).
An example whose error becomes non-finite has been broken: it is frozen there (its gradient
would be NaN) and its error stays inf/NaN in the curve, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowforge.diagnostics.maps import Map

PAPER_STEPS = 200
PAPER_STEP_SIZE = 5e-4


def attack_radius(n_bits: int) -> float:
    """eps = 0.5 / 2^n: the half-width of a dequantisation cell of n-bit data."""
    return 0.5 / 2**n_bits


@dataclass
class AttackResult:
    x_natural: Tensor  # (B, ...) cell centres
    x_attacked: Tensor  # (B, ...) the final iterates
    errors: Tensor  # (steps + 1, B) float64 error of the iterate before each step, and after the last
    epsilon: float

    @property
    def final(self) -> Tensor:
        return self.errors[-1]

    @property
    def worst(self) -> Tensor:
        """(B,) the largest error met during the attack; inf where it broke (NaN counts as inf)."""
        return self.errors.nan_to_num(nan=float("inf"), posinf=float("inf")).max(dim=0).values


def _errors(x: Tensor, rebuilt: Tensor) -> Tensor:
    return torch.linalg.vector_norm((x - rebuilt).reshape(x.shape[0], -1).double(), dim=1)


def invertibility_attack(forward: Map, inverse: Map, x_natural: Tensor, epsilon: float, steps: int = PAPER_STEPS,
                         step_size: float = PAPER_STEP_SIZE, bounds: tuple[float, float] = (-0.5, 0.5),
                         generator: torch.Generator | None = None, progress=None) -> AttackResult:
    """Attack every example of `x_natural` (cell centres, model space); see the module docstring.
    `progress`, if given, is called with no argument after every step (e.g. a tqdm bar's update)."""
    lo_cell, hi_cell = x_natural - epsilon, x_natural + epsilon
    lo, hi = bounds

    def project(x: Tensor) -> Tensor:
        return torch.minimum(torch.maximum(x, lo_cell), hi_cell).clamp(lo, hi)

    noise = (2 * torch.rand(x_natural.shape, generator=generator, dtype=x_natural.dtype) - 1).to(x_natural.device)
    x = project(x_natural + epsilon * noise).detach()
    curve = []
    broken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    shape = (-1, *([1] * (x.dim() - 1)))
    for _ in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            err = _errors(x, inverse(forward(x)))
            (grad,) = torch.autograd.grad(err[torch.isfinite(err)].sum(), x, allow_unused=True)
        err = err.detach()
        curve.append(err.cpu())
        broken |= ~torch.isfinite(err)
        grad = torch.zeros_like(x) if grad is None else torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        step = step_size * torch.sign(grad) * (~broken).reshape(shape)
        x = project(x.detach() + step).detach()
        if progress is not None:
            progress()
    with torch.no_grad():
        curve.append(_errors(x, inverse(forward(x))).cpu())
    return AttackResult(x_natural=x_natural.detach(), x_attacked=x, errors=torch.stack(curve), epsilon=epsilon)
