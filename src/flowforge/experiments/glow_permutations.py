"""Glow's permutation comparison (Kingma & Dhariwal 2018, section 5.1, figure 3): reverse vs
fixed shuffle vs invertible 1x1 convolution, each with additive and affine coupling, every
variant trained with the same budget — the same number of steps (the paper compares curves per
epoch; a step budget is immune to machine noise) or, with `minutes`, the same training time;
test bits/dim from the checkpoint selected on validation. Re-running continues: finished
variants are kept, interrupted ones resume.
"""

from __future__ import annotations

from pathlib import Path

from flowforge.runs.pipeline import evaluate_run, evaluated, train_or_resume

COUPLINGS = ("additive", "affine")
PERMUTATIONS = ("reverse", "shuffle", "conv1x1")


def _run_variant(config: Path, run_dir: Path, coupling: str, permutation: str, budget: list[str],
                 data_dir: str | None, progress: bool) -> dict:
    result = evaluated(run_dir)
    if result is None:
        overrides = [f'model.coupling="{coupling}"', f'model.permutation="{permutation}"', *budget]
        train_or_resume(config, overrides, run_dir, data_dir, progress)
        result = evaluate_run(run_dir, command=f"flowforge reproduce glow-permutations ({run_dir.name})",
                              data_dir=data_dir, progress=progress)
    return {**result, "coupling": coupling, "permutation": permutation}


def table(results: list[dict]) -> str:
    lines = ["| coupling | permutation | steps | train time (s) | best valid bpd | test bpd (± s.e.) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['coupling']} | {r['permutation']} | {r['steps']} | {r['train_seconds']:.0f} | "
                     f"{r['best_valid']:.4f} | {r['bpd']:.4f} ± {r['bpd_std_err']:.4f} |")
    return "\n".join(lines)


def reproduce(out_dir: str | Path, config: str | Path = "configs/glow-permutations.toml", steps: int | None = None,
              minutes: float | None = None, data_dir: str | None = None, progress: bool = True) -> str:
    """Train and evaluate all six variants under `out_dir`; write and return the results table.
    The budget is the config's unless `steps` or `minutes` (then steps are unlimited) is given."""
    out_dir = Path(out_dir)
    budget = [f"train.max_steps={steps}"] if steps else []
    if minutes:
        budget += [f"train.max_minutes={minutes}"] + ([] if steps else ["train.max_steps=1000000000"])
    results = [_run_variant(Path(config), out_dir / f"{c}-{p}", c, p, budget, data_dir, progress)
               for c in COUPLINGS for p in PERMUTATIONS]
    text = table(results)
    (out_dir / "results.md").write_text(text + "\n")
    return text
