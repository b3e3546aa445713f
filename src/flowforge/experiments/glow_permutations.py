"""Glow's permutation comparison (Kingma & Dhariwal 2018, section 5.1, figure 3): reverse vs
fixed shuffle vs invertible 1x1 convolution, each with additive and affine coupling, every
variant trained with the same budget — the same number of steps (the paper compares curves per
epoch; a step budget is immune to machine noise) or, with `minutes`, the same training time;
test bits/dim from the checkpoint selected on validation. Every variant is trained once per seed
(`seeds`, default 3: 0, 1, 2); a seed sets the initial weights, the batch order, the dequantisation
noise (train.seed) and the fixed shuffle (model.seed). The table gives, per (coupling,
permutation), the mean, the sample standard deviation and the min–max of the seeds' test bits/dim
(experiments/seed_table.py). Re-running continues: finished runs are kept, interrupted ones resume.
"""

from __future__ import annotations

import json
from pathlib import Path

from flowforge.experiments.seed_table import aggregate, seeds_table
from flowforge.runs.pipeline import evaluate_run, evaluated, train_or_resume

COUPLINGS = ("additive", "affine")
PERMUTATIONS = ("reverse", "shuffle", "conv1x1")
DEFAULT_SEEDS = 3


def _run_variant(config: Path, run_dir: Path, coupling: str, permutation: str, seed: int, budget: list[str],
                 data_dir: str | None, progress: bool) -> dict:
    result = evaluated(run_dir)
    if result is None:
        overrides = [f'model.coupling="{coupling}"', f'model.permutation="{permutation}"', f"model.seed={seed}",
                     f"train.seed={seed}", *budget]
        train_or_resume(config, overrides, run_dir, data_dir, progress)
        result = evaluate_run(run_dir, command=f"flowforge reproduce glow-permutations ({run_dir.parent.name}/"
                              f"{run_dir.name})", data_dir=data_dir, progress=progress)
    return {**result, "coupling": coupling, "permutation": permutation, "seed": seed}


def table(results: list[dict]) -> str:
    """One row per run: the seeds one by one."""
    lines = ["| coupling | permutation | seed | steps | train time (s) | best valid bpd | test bpd (± s.e.) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['coupling']} | {r['permutation']} | {r['seed']} | {r['steps']} | "
                     f"{r['train_seconds']:.0f} | {r['best_valid']:.4f} | {r['bpd']:.4f} ± {r['bpd_std_err']:.4f} |")
    return "\n".join(lines)


def reproduce(out_dir: str | Path, config: str | Path = "configs/glow-permutations.toml", steps: int | None = None,
              minutes: float | None = None, data_dir: str | None = None, progress: bool = True,
              seeds: int | None = None) -> str:
    """Train and evaluate all six variants for each of `seeds` seeds (0 .. seeds-1) under
    `out_dir`/seedS/; write results.md (the mean / spread table, then every run) and results.json;
    return the mean / spread table. The budget is the config's unless `steps` or `minutes` (then
    steps are unlimited) is given."""
    out_dir = Path(out_dir)
    seeds = DEFAULT_SEEDS if seeds is None else seeds
    if seeds < 1:
        raise ValueError(f"seeds = {seeds}: expected at least 1")
    budget = [f"train.max_steps={steps}"] if steps else []
    if minutes:
        budget += [f"train.max_minutes={minutes}"] + ([] if steps else ["train.max_steps=1000000000"])
    results = [_run_variant(Path(config), out_dir / f"seed{s}" / f"{c}-{p}", c, p, s, budget, data_dir, progress)
               for s in range(seeds) for c in COUPLINGS for p in PERMUTATIONS]
    groups = aggregate(results, keys=("coupling", "permutation"), value="bpd")
    text = seeds_table(groups, keys=("coupling", "permutation"), what="test bpd")
    (out_dir / "results.json").write_text(json.dumps({"seeds": seeds, "groups": groups, "runs": results}, indent=2))
    (out_dir / "results.md").write_text(
        f"Glow permutations on Fashion-MNIST, {seeds} seed(s) per variant; test bits/dim of the checkpoint selected "
        "on validation.\n\n" + text + "\n\nEvery run:\n\n" + table(results) + "\n")
    return text
