"""The four unnormalised 2-D target densities p~(z) = exp(-U(z)) of Rezende & Mohamed 2015
("Variational Inference with Normalizing Flows", section 6.1, table 1 and figure 3), the test bed
of reverse-KL fits (objectives/reverse_kl.py):

    w1(z) = sin(2 pi z1 / 4),  w2(z) = 3 exp(-((z1 - 1) / 0.6)^2 / 2),  w3(z) = 3 sigmoid((z1 - 1) / 0.3)
    U1(z) = ((|z| - 2) / 0.4)^2 / 2 - log(exp(-((z1 - 2) / 0.6)^2 / 2) + exp(-((z1 + 2) / 0.6)^2 / 2))
    U2(z) = ((z2 - w1) / 0.4)^2 / 2
    U3(z) = -log(exp(-((z2 - w1) / 0.35)^2 / 2) + exp(-((z2 - w1 + w2) / 0.35)^2 / 2))
    U4(z) = -log(exp(-((z2 - w1) / 0.4)^2 / 2) + exp(-((z2 - w1 + w3) / 0.35)^2 / 2))

(sums of exponentials as logsumexp). U2-U4 are periodic in z1 and not normalisable on the whole
plane; the paper shows them on [-4, 4]^2, and so do our fits. The densities are functions of
(B, 2) tensors returning the (B,) values -U(z) (log p~, up to the unknown constant).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

LogDensity = Callable[[Tensor], Tensor]


def _w1(z: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z[:, 0] / 4)


def _w2(z: Tensor) -> Tensor:
    return 3 * torch.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)


def _w3(z: Tensor) -> Tensor:
    return 3 * torch.sigmoid((z[:, 0] - 1) / 0.3)


def _log_sum_exp2(a: Tensor, b: Tensor) -> Tensor:
    return torch.logaddexp(a, b)


def u1(z: Tensor) -> Tensor:
    ring = 0.5 * ((z.norm(dim=1) - 2) / 0.4) ** 2
    return ring - _log_sum_exp2(-0.5 * ((z[:, 0] - 2) / 0.6) ** 2, -0.5 * ((z[:, 0] + 2) / 0.6) ** 2)


def u2(z: Tensor) -> Tensor:
    return 0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2


def u3(z: Tensor) -> Tensor:
    d = z[:, 1] - _w1(z)
    return -_log_sum_exp2(-0.5 * (d / 0.35) ** 2, -0.5 * ((d + _w2(z)) / 0.35) ** 2)


def u4(z: Tensor) -> Tensor:
    d = z[:, 1] - _w1(z)
    return -_log_sum_exp2(-0.5 * (d / 0.4) ** 2, -0.5 * ((d + _w3(z)) / 0.35) ** 2)


ENERGIES: dict[str, Callable[[Tensor], Tensor]] = {"u1": u1, "u2": u2, "u3": u3, "u4": u4}
"""The potentials U of table 1 by name."""

BOX = ((-4.0, 4.0), (-4.0, 4.0))
"""The box the paper shows the energies on (figure 3): fits are judged against the target restricted to it."""


def energy_log_density(name: str) -> LogDensity:
    """log p~(z) = -U(z) of the named energy ("u1" .. "u4"); (B, 2) -> (B,)."""
    if name not in ENERGIES:
        raise ValueError(f"unknown energy {name!r}; expected one of {sorted(ENERGIES)}")
    energy = ENERGIES[name]

    def log_density(z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != 2:
            raise ValueError(f"the energies of Rezende & Mohamed 2015 are 2-D: expected (B, 2), got {tuple(z.shape)}")
        return -energy(z)

    return log_density


def box_log_z(name: str, bounds=BOX, resolution: int = 400) -> float:
    """log of the integral of exp(-U) over `bounds` by the midpoint rule on a resolution^2 grid (float64)."""
    (x0, x1), (y0, y1) = bounds
    dx, dy = (x1 - x0) / resolution, (y1 - y0) / resolution
    xs = torch.linspace(x0 + dx / 2, x1 - dx / 2, resolution, dtype=torch.float64)
    ys = torch.linspace(y0 + dy / 2, y1 - dy / 2, resolution, dtype=torch.float64)
    grid = torch.cartesian_prod(xs, ys)
    return float(torch.logsumexp(energy_log_density(name)(grid), 0)) + math.log(dx * dy)
