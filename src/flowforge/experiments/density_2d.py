"""The 2-D density experiments of the LGF paper's baselines (appendix C.1, figures 1 and 4):
MAF with 10 and 20 MADE layers and a flat RealNVP trained on every 2-D set; test NLL (exact)
from the checkpoint selected on validation, and per data set one figure with the data beside
each model's learned density (non-finite density drawn in its own colour). Re-running keeps
finished runs and resumes interrupted ones.
"""

from __future__ import annotations

from pathlib import Path

import torch

from flowforge.data.registry import DATASET_KINDS
from flowforge.experiments.variants import Variant, budget, merged, overrides
from flowforge.runs.pipeline import evaluate_run, evaluated, train_or_resume
from flowforge.runs.run_dir import load_trained
from flowforge.runs.shipped_configs import config_path

DATASETS = tuple(name for name, kind in DATASET_KINDS.items() if kind == "toy2d")
MODELS: dict[str, Variant] = {
    "MAF-10": {"model": {"name": "maf", "layers": 10, "hidden": [50, 50]}},
    "MAF-20": {"model": {"name": "maf", "layers": 20, "hidden": [50, 50]}},
    "RealNVP-10": {"model": {"name": "flat-realnvp", "layers": 10, "hidden": [50, 50]}},
}
BOUNDS = ((-4.0, 4.0), (-4.0, 4.0))


def _train_and_test(config: Path, run_dir: Path, dataset: str, variant: Variant, run_budget: list[str],
                    progress: bool) -> tuple[dict, torch.nn.Module]:
    result = evaluated(run_dir)
    if result is None:
        train_or_resume(config, [*overrides(merged({"data": {"dataset": dataset}}, variant)), *run_budget], run_dir,
                        progress=progress)
        result = evaluate_run(run_dir, command=f"flowforge reproduce density-2d ({dataset}/{run_dir.name})",
                              device="cpu")
    return result, load_trained(run_dir, which="best")[1]


def reproduce(out_dir: str | Path, config: str | Path = "density-2d", steps: int | None = None,
              minutes: float | None = None, datasets: tuple[str, ...] = DATASETS, progress: bool = True) -> str:
    """Train every model on every 2-D set under `out_dir`; write figures and the NLL table."""
    from flowforge.data.toy2d import load_toy_splits
    from flowforge.viz.density2d import log_density_grid, save_density_figure

    out_dir = Path(out_dir)
    rows = ["| data set | " + " | ".join(MODELS) + " |", "|---|" + "---|" * len(MODELS)]
    for dataset in datasets:
        cells, panels = [], []
        for label, variant in MODELS.items():
            result, model = _train_and_test(config_path(config), out_dir / dataset / label, dataset, variant,
                                            budget(steps, minutes), progress)
            cells.append(f"{result['nll']:.3f} ± {result['nll_std_err']:.3f}")
            with torch.no_grad():
                panels.append((label, *log_density_grid(model.log_prob, bounds=BOUNDS)))
        test_points = load_toy_splits(dataset).test.numpy()
        save_density_figure(out_dir / f"{dataset}.png", test_points, panels, bounds=BOUNDS)
        rows.append(f"| {dataset} | " + " | ".join(cells) + " |")
    table = "\n".join(rows)
    (out_dir / "results.md").write_text(
        "Test NLL in nats per point (± standard error over the 5,000 test points), best-validation "
        "checkpoint.\n\n" + table + "\n")
    return table
