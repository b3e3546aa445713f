"""The invertibility attack on models trained on 5-bit Fashion-MNIST (Behrmann et al. 2021,
section 6, figure 11: on CelebA64 the affine-coupling model's reconstruction error explodes under
the attack while the Residual Flow's stays bounded by its fixed-point tolerance). Each model in
MODELS (label -> config path; add a line to add a model) is trained (or its run continued), then
attacked twice: on the first test images (the paper's protocol), and on the test images of the
first SCREEN whose round trip is already worst (a small model has few unstable points, and the
first images may hold none). The final reconstruction errors go side by side in results.md,
with the error curves in one figure per selection. Re-running keeps finished runs and attacks.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from flowforge.diagnostics.attack import PAPER_STEPS
from flowforge.errors import FlowforgeError
from flowforge.runs.attack_run import attack_run
from flowforge.runs.checkpoint import load_checkpoint
from flowforge.runs.pipeline import train_or_resume
from flowforge.runs.run_dir import RunPaths

SCREEN = 1000
MODELS = {
    "affine-glow": "stability-glow-affine-5bit",
    "additive-glow": "stability-glow-additive-5bit",
    "resflow": "stability-resflow-5bit",
}


def _g(value) -> str:
    return "—" if value is None else f"{value:.3g}"


def table(rows: list[dict]) -> str:
    lines = ["| model | selection | train steps | train time (s) | best valid bpd | images | start mean / max | "
             "final mean / median / max (finite) | final non-finite | largest finite error at any step | "
             "non-finite at any step |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, st, w = r["final"], r["start"], r["worst_during_attack"]
        lines.append(f"| {r['label']} | {r['selection']} | {r['train_steps']} | {r['train_seconds']:.0f} | "
                     f"{r['best_valid']:.3f} | {f['examples']} | {_g(st['mean'])} / {_g(st['max'])} | "
                     f"{_g(f['mean'])} / {_g(f['median'])} / {_g(f['max'])} | {f['non_finite']} | "
                     f"{_g(r.get('largest_finite_error'))} | "
                     f"{w['non_finite']} |")
    return "\n".join(lines)


def reproduce(out_dir: str | Path, config: str | Path | None = None, steps: int | None = None,
              minutes: float | None = None, data_dir: str | None = None, progress: bool = True,
              examples: int = 32, attack_steps: int = PAPER_STEPS, models: dict[str, str] | None = None,
              screen: int = SCREEN) -> str:
    """Train and attack every model of `models` (default MODELS) under `out_dir`; write
    results.md and one curve figure per selection; return the table. `steps` / `minutes` override the
    configs' training budgets."""
    from flowforge.viz.stability_plots import save_attack_curves

    if config is not None:
        raise FlowforgeError("attack-fashion trains the configs listed in experiments/attack.py MODELS; --config does not apply")
    out_dir = Path(out_dir)
    budget = ([f"train.max_steps={steps}"] if steps else []) + ([f"train.max_minutes={minutes}"] if minutes else [])
    selections = {"attack": (0, f"first {examples}")}
    if screen:
        selections[f"attack-screen{screen}"] = (screen, f"worst {examples} of first {screen}")
    rows, curves = [], {name: {} for name in selections}
    for label, cfg_path in (models or MODELS).items():
        run_dir = out_dir / label
        for name, (n_screen, selection) in selections.items():
            attack_dir = run_dir / name
            if not (attack_dir / "attack.json").is_file():
                train_or_resume(cfg_path, budget, run_dir, data_dir, progress)
                attack_run(run_dir, examples=examples, steps=attack_steps, out=attack_dir, data_dir=data_dir,
                           command=f"flowforge reproduce attack-fashion ({label}, {selection})", progress=progress,
                           screen=n_screen)
            summary = json.loads((attack_dir / "attack.json").read_text())
            last = load_checkpoint(RunPaths(run_dir).last)
            rows.append({"label": label, "selection": selection, "train_steps": last["step"],
                         "train_seconds": last["elapsed_seconds"], "best_valid": last["best_valid"], **summary})
            curves[name][label] = torch.load(attack_dir / "attack-result.pt")["errors"]
    for name, (_, selection) in selections.items():
        save_attack_curves(out_dir / f"{name}-curves.png", curves[name],
                           title=f"invertibility attack, 5-bit Fashion-MNIST ({selection} test images)")
    text = table(rows)
    (out_dir / "results.md").write_text(
        "Invertibility attack (200 signed-gradient steps of 5e-4 inside the dequantisation cell, eps = 0.5/2^5) on "
        "the first test images; reconstruction error ||x' - F^-1(F(x'))||_2 in model space; non-finite counted, "
        "not averaged.\n\n" + text + "\n\n" + "".join(f"![{name}]({name}-curves.png)\n" for name in selections))
    return text
