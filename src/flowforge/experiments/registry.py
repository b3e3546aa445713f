"""The paper experiments of `flowforge reproduce NAME`: each is a module of this package with a
`reproduce(out_dir, **options) -> str` function that trains what it needs and returns its table.
Modules are imported only when their experiment runs."""

from __future__ import annotations

import importlib
from collections.abc import Callable

EXPERIMENTS: dict[str, str] = {
    "glow-permutations": "glow_permutations",
    "density-2d": "density_2d",
    "lgf-2d": "lgf_2d",
    "inn-table": "inn_table",
    "toy-regression": "toy_regression",
    "gradient-angle": "gradient_angles",
    "attack-fashion": "attack",
    "stability-2d": "stability_2d",
    "vae-flow": "vae_flow",
    "reverse-kl-2d": "reverse_kl_2d",
    "flow-gan": "flow_gan",
    "inn-regulariser-grid": "inn_regulariser_grid",
}


def reproduce_function(name: str) -> Callable[..., str]:
    """The `reproduce` function of experiment `name`."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; available: {sorted(EXPERIMENTS)}")
    return importlib.import_module(f"flowforge.experiments.{EXPERIMENTS[name]}").reproduce
