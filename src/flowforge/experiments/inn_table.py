"""Table 9/10 analog of Behrmann et al. 2021 ("Understanding and mitigating exploding inverses in
invertible neural networks", supplement G, tables 9 and 10) on Fashion-MNIST (CIFAR-10 is not
available here): INN classifiers with additive vs affine coupling, 1x1 convolution vs shuffle, and
no regulariser vs bi-directional finite differences (FD) vs the normalising-flow regulariser (NF).

Each of the 12 variants trains with the same step budget (experiments/inn_training.py); the
checkpoint with the best validation accuracy is selected and every figure is measured on the test
split: accuracy; the reconstruction error ||x - F^-1(F(x))||_2 over all test images (mean, max over
the finite ones, and the share that is inf/NaN — never dropped); and, on the first `svd_images`
test images, sigma_max and sigma_min of J_F by power iteration (sigma_min as 1 / sigma_max of
J_{F^-1} at F(x)), giving the condition number per image. The paper reports one image's exact SVD;
here the table shows the median and the maximum condition number over the images, the smallest
sigma_min and the largest sigma_max. Re-running keeps evaluated variants; an unfinished one is
retrained from the start.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from flowforge.diagnostics.jacobian import singular_value_extremes
from flowforge.diagnostics.maps import invertible_map
from flowforge.diagnostics.reconstruction import error_summary, reconstruction_errors
from flowforge.evaluation.accuracy import classification_accuracy
from flowforge.experiments.inn_training import train_classifier
from flowforge.runs.config import load_config
from flowforge.runs.data_sources import ImageSource
from flowforge.runs.run_dir import load_trained

COUPLINGS = ("additive", "affine")
PERMUTATIONS = ("shuffle", "conv1x1")
REGULARISERS = ("none", "fd", "nf")
RESULT_FILE = "inn-eval-test.json"
SVD_SEED = 0


def _stats(values: torch.Tensor) -> dict:
    """Median / min / max over the finite values and the count of non-finite ones."""
    values = values.detach().double().cpu()
    finite = values[torch.isfinite(values)]
    if not finite.numel():
        return {"median": None, "min": None, "max": None, "non_finite": int(values.numel())}
    return {"median": float(finite.median()), "min": float(finite.min()), "max": float(finite.max()),
            "non_finite": int(values.numel() - finite.numel())}


def evaluate_variant(run_dir: str | Path, data_dir: str | None = None, svd_images: int = 100, power_iters: int = 30,
                     batch_size: int = 500, test_examples: int = 0, progress: bool = False) -> dict:
    """Test accuracy, reconstruction errors and Jacobian singular values of the run's checkpoint
    selected on validation (on the first `test_examples` test images; 0 = all); written to
    RUN_DIR/inn-eval-test.json and returned."""
    cfg, model, state = load_trained(run_dir, which="best")
    images, labels = ImageSource(cfg, data_dir).tensors("test", test_examples)
    # the Trainer's state holds best_valid; runs of the earlier dedicated loop held valid_accuracy
    valid = state["best_valid"] if "best_valid" in state else state["valid_accuracy"]
    result = {"checkpoint_step": state["step"], "valid_accuracy": valid}
    result.update(classification_accuracy(model, images, labels, batch_size=batch_size, progress=progress))
    forward, inverse = invertible_map(model)
    x = model.prepare(images)
    result["reconstruction"] = error_summary(reconstruction_errors(forward, inverse, x, batch_size=batch_size))
    sv = singular_value_extremes(forward, inverse, x[:svd_images], iters=power_iters, exact=False,
                                 generator=torch.Generator().manual_seed(SVD_SEED))
    result["jacobian"] = {"images": min(svd_images, len(x)), "power_iterations": power_iters,
                          **{name: _stats(values) for name, values in sv.items()}}
    Path(run_dir, RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


def _sci(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2g}"


def condition_max_cell(jac: dict) -> str:
    """The largest condition number, with the count of non-finite singular values beside it."""
    bad = max(jac[k]["non_finite"] for k in ("sigma_max", "sigma_min", "condition"))
    return _sci(jac["condition"]["max"]) + (f" ({bad} non-finite)" if bad else "")


def table(rows: list[dict]) -> str:
    lines = ["| coupling | permutation | regulariser | steps | train time (s) | valid acc | test acc | "
             "recon. err. mean | recon. err. max | non-finite recon. | cond. median | cond. max | "
             "min σ_min | max σ_max |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rec, jac = r["reconstruction"], r["jacobian"]
        cond_max = condition_max_cell(jac)
        lines.append(
            f"| {r['coupling']} | {r['permutation']} | {r['regulariser']} | {r['steps']} | {r['train_seconds']:.0f} | "
            f"{100 * r['valid_accuracy']:.2f} | {100 * r['accuracy']:.2f} | {_sci(rec['mean'])} | {_sci(rec['max'])} | "
            f"{rec['non_finite']}/{rec['examples']} | {_sci(jac['condition']['median'])} | {cond_max} | "
            f"{_sci(jac['sigma_min']['min'])} | {_sci(jac['sigma_max']['max'])} |")
    return "\n".join(lines)


def _run_variant(config: Path, run_dir: Path, coupling: str, permutation: str, regulariser: str,
                 budget: list[str], data_dir: str | None, progress: bool, svd_images: int, power_iters: int,
                 test_examples: int) -> dict:
    result_path = run_dir / RESULT_FILE
    summary_path = run_dir / "train-summary.json"
    if result_path.is_file() and summary_path.is_file():
        result = json.loads(result_path.read_text())
        summary = json.loads(summary_path.read_text())
    else:
        overrides = [f'model.coupling="{coupling}"', f'model.permutation="{permutation}"',
                     f'model.regulariser="{regulariser}"', *budget]
        summary = train_classifier(load_config(config, overrides), run_dir, data_dir, progress)
        summary_path.write_text(json.dumps(summary, indent=2))
        result = evaluate_variant(run_dir, data_dir, svd_images, power_iters, test_examples=test_examples,
                                  progress=progress)
    return {**result, "steps": summary["steps"], "train_seconds": summary["train_seconds"],
            "skipped_steps": summary["skipped_steps"], "coupling": coupling, "permutation": permutation,
            "regulariser": regulariser}


def reproduce(out_dir: str | Path, config: str | Path = "configs/inn-classifier.toml", steps: int | None = None,
              minutes: float | None = None, data_dir: str | None = None, progress: bool = True,
              svd_images: int = 100, power_iters: int = 30, test_examples: int = 0,
              variants: tuple[tuple[str, str, str], ...] | None = None) -> str:
    """Train and evaluate the variants (default all 12) under `out_dir`; write results.md and
    results.json and return the table. The budget is the config's unless `steps` or `minutes`
    (per variant) is given; `test_examples` > 0 evaluates on that many test images only (tests)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = [f"train.max_steps={steps}"] if steps else []
    if minutes:
        budget += [f"train.max_minutes={minutes}"] + ([] if steps else ["train.max_steps=1000000000"])
    variants = variants or tuple((c, p, r) for c in COUPLINGS for p in PERMUTATIONS for r in REGULARISERS)
    rows = [_run_variant(Path(config), out_dir / f"{c}-{p}-{r}", c, p, r, budget, data_dir, progress, svd_images,
                         power_iters, test_examples) for c, p, r in variants]
    text = table(rows)
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2))
    (out_dir / "results.md").write_text(
        "INN classifiers on Fashion-MNIST (Behrmann et al. 2021, tables 9/10 analog). Test split; checkpoint "
        f"selected on validation accuracy. Reconstruction error ||x - F^-1(F(x))||_2 over all test images in model "
        f"space [-0.5, 0.5) (mean / max over finite ones; non-finite counted); condition number and singular values "
        f"of J_F by {power_iters} power iterations on the first {svd_images} test images.\n\n" + text + "\n")
    return text
