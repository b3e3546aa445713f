"""Table 9 and figures 14-17 analog of Behrmann et al. 2021 (supplement G, "Regularization
Hyperparameters") on Fashion-MNIST: INN classifiers trained with no regulariser and with the
paper's grid of coefficients — normalising-flow (NF) c in {1e-3, 1e-4, 1e-5} and bi-directional
finite differences (FD) lambda in {1e-3, 1e-4, 5e-5} — on one architecture (default: affine coupling
with 1x1 convolutions, the one whose inverse explodes unregularised; `architectures` takes more).

Every variant has the same step budget (experiments/inn_training.py) and logs its training dynamics
every `dynamics_every` steps (diagnostics/inn_dynamics.py: sigma_max, sigma_min, condition number
on 8 validation images, accuracy on 500); the checkpoint with the best validation accuracy is
scored on the test split as in `reproduce inn-table` (inn_table.evaluate_variant: accuracy,
reconstruction error over all test images with inf / NaN counted, power-iteration singular values
on the first `svd_images`). Writes results.md / results.json and inn-dynamics.png (figures 14 / 15:
one row for NF, one for FD, each with the unregularised run). Re-running keeps evaluated variants.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from flowforge.experiments.inn_table import RESULT_FILE, _sci, condition_max_cell, evaluate_variant
from flowforge.experiments.inn_training import train_classifier
from flowforge.runs.config import load_config

GRID = (("none", 0.0), ("nf", 1e-3), ("nf", 1e-4), ("nf", 1e-5), ("fd", 1e-3), ("fd", 1e-4), ("fd", 5e-5))
ARCHITECTURES = (("affine", "conv1x1"),)


def run_name(coupling: str, permutation: str, regulariser: str, coefficient: float) -> str:
    return f"{coupling}-{permutation}-{regulariser}" + (f"-{coefficient:g}" if regulariser != "none" else "")


def table(rows: list[dict]) -> str:
    lines = ["| coupling | permutation | regulariser | coeff. | steps | skipped steps | train time (s) | test acc | "
             "recon. err. mean | recon. err. max | non-finite recon. | cond. median | cond. max | min σ_min | max σ_max |",
             "|" + "---|" * 15]
    for r in rows:
        rec, jac = r["reconstruction"], r["jacobian"]
        cond_max = condition_max_cell(jac)
        lines.append(
            f"| {r['coupling']} | {r['permutation']} | {r['regulariser']} | {r['coefficient']:g} | {r['steps']} | "
            f"{r['skipped_steps']} | "
            f"{r['train_seconds']:.0f} | {100 * r['accuracy']:.2f} | {_sci(rec['mean'])} | {_sci(rec['max'])} | "
            f"{rec['non_finite']}/{rec['examples']} | {_sci(jac['condition']['median'])} | {cond_max} | "
            f"{_sci(jac['sigma_min']['min'])} | {_sci(jac['sigma_max']['max'])} |")
    return "\n".join(lines)


def reproduce(out_dir: str | Path, config: str | Path = "configs/inn-classifier.toml", steps: int | None = None,
              minutes: float | None = None, data_dir: str | None = None, progress: bool = True,
              dynamics_every: int = 50, svd_images: int = 32, power_iters: int = 30, test_examples: int = 0,
              grid: tuple[tuple[str, float], ...] = GRID,
              architectures: tuple[tuple[str, str], ...] = ARCHITECTURES, figure: str | Path | None = None) -> str:
    """Train and evaluate every (architecture, regulariser, coefficient) under `out_dir`; write the
    table, results.json and inn-dynamics.png (and a copy at `figure`); return the table. Budget per
    variant: the config's (800 steps) unless `steps` or `minutes` is given."""
    from flowforge.viz.inn_dynamics import inn_dynamics_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    budget = [f"train.max_steps={steps}"] if steps else []
    if minutes:
        budget += [f"train.max_minutes={minutes}"] + ([] if steps else ["train.max_steps=1000000000"])
    rows, runs = [], {}
    for coupling, permutation in architectures:
        for regulariser, coefficient in grid:
            name = run_name(coupling, permutation, regulariser, coefficient)
            run_dir = out / name
            runs[name] = run_dir
            result_path, summary_path = run_dir / RESULT_FILE, run_dir / "train-summary.json"
            if result_path.is_file() and summary_path.is_file():
                result, summary = json.loads(result_path.read_text()), json.loads(summary_path.read_text())
            else:
                field = {"fd": "fd_coefficient", "nf": "nf_coefficient"}.get(regulariser)
                overrides = [f'model.coupling="{coupling}"', f'model.permutation="{permutation}"',
                             f'model.regulariser="{regulariser}"', f"train.diagnose_every={dynamics_every}",
                             *([f"model.{field}={coefficient}"] if field else []), *budget]
                summary = train_classifier(load_config(config, overrides), run_dir, data_dir, progress)
                summary_path.write_text(json.dumps(summary, indent=2))
                result = evaluate_variant(run_dir, data_dir, svd_images, power_iters, test_examples=test_examples,
                                          progress=progress)
            rows.append({**result, **{k: summary[k] for k in ("steps", "train_seconds", "skipped_steps")},
                         "coupling": coupling, "permutation": permutation, "regulariser": regulariser,
                         "coefficient": coefficient, "run": name})
    text = table(rows)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    figures = []
    for coupling, permutation in architectures:
        part = {n: d for n, d in runs.items() if n.startswith(f"{coupling}-{permutation}-")}
        suffix = "" if len(architectures) == 1 else f"-{coupling}-{permutation}"
        drawn = inn_dynamics_figure(out / f"inn-dynamics{suffix}.png", part, f"{coupling} coupling, {permutation}")
        figures.append(drawn)
        if figure:
            target = Path(figure)
            target = target.with_name(target.stem + suffix + target.suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            figures.append(Path(shutil.copyfile(drawn, target)))
    (out / "results.md").write_text(
        "INN classifiers on Fashion-MNIST, regulariser strengths (Behrmann et al. 2021, table 9 analog). Test split; "
        "checkpoint selected on validation accuracy. Reconstruction error over the test images in model space "
        f"(mean / max over finite ones; non-finite counted); singular values of J_F by {power_iters} power iterations "
        f"on the first {svd_images} test images. Training dynamics every {dynamics_every} steps: "
        f"{', '.join(map(str, figures))}.\n\n" + text + "\n")
    return text
