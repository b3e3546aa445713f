"""Glow's permutation comparison (Kingma & Dhariwal 2018, section 5.1, figure 3): reverse vs
fixed shuffle vs invertible 1x1 convolution, each with additive and affine coupling, every
variant trained with the same budget — the same number of steps (the paper compares curves per
epoch; a step budget is immune to machine noise) or, with `minutes`, the same training time;
test bits/dim from the checkpoint selected on validation. Re-running continues: finished
variants are kept, interrupted ones resume.
"""

from __future__ import annotations

import json
from pathlib import Path

from flowforge.training.checkpoint import checkpoint_exists
from flowforge.training.config import load_config
from flowforge.training.data_sources import make_source
from flowforge.training.runs import RunPaths, load_trained, read_run_config
from flowforge.training.trainer import Trainer

COUPLINGS = ("additive", "affine")
PERMUTATIONS = ("reverse", "shuffle", "conv1x1")


def _run_variant(config: Path, run_dir: Path, coupling: str, permutation: str, budget: list[str],
                 data_dir: str | None, progress: bool) -> dict:
    paths = RunPaths(run_dir)
    result_file = paths.eval_result("test")
    if result_file.is_file():
        return json.loads(result_file.read_text())
    overrides = [f'model.coupling="{coupling}"', f'model.permutation="{permutation}"', *budget]
    resume = checkpoint_exists(paths.last)
    cfg = load_config(None, [], base=read_run_config(run_dir).to_dict()) if resume else load_config(config, overrides)
    state = Trainer(cfg, run_dir, data_dir=data_dir, progress=progress).fit(resume=resume)
    cfg, model, ckpt = load_trained(run_dir, which="best", device=Trainer.device_for(cfg))
    source = make_source(cfg, data_dir)
    test = source.evaluate(model, source.tensors("test"), what=f"{run_dir.name} test split",
                           batch_size=cfg.eval.batch_size, device=next(model.parameters()).device, progress=progress)
    result = {
        **test, "metric": "bpd", "split": "test", "samples": 1, "checkpoint": ckpt["checkpoint"], "step": ckpt["step"],
        "coupling": coupling, "permutation": permutation, "steps": state.step,
        "train_seconds": state.elapsed_seconds, "best_valid_bpd": state.best_valid,
        "command": f"flowforge reproduce glow-permutations (variant {coupling}/{permutation})",
    }
    result_file.write_text(json.dumps(result, indent=2))
    return result


def table(results: list[dict]) -> str:
    lines = ["| coupling | permutation | steps | train time (s) | best valid bpd | test bpd (± s.e.) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['coupling']} | {r['permutation']} | {r['steps']} | {r['train_seconds']:.0f} | "
                     f"{r['best_valid_bpd']:.4f} | {r['bpd']:.4f} ± {r['bpd_std_err']:.4f} |")
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
