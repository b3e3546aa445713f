"""`flowforge lipschitz RUN_DIR`: the Lipschitz-bound table (diagnostics/lipschitz_report.py) of a
trained run's checkpoint at examples of a split, written beside the run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from flowforge.diagnostics.during_training import model_inputs
from flowforge.diagnostics.lipschitz_report import jsonable, lipschitz_table, render_markdown
from flowforge.runs.data_sources import make_source
from flowforge.runs.run_dir import load_trained


def lipschitz_run(run_dir: str | Path, split: str = "test", examples: int = 4, out: str | Path | None = None,
                  data_dir: str | None = None, which: str = "best", seed: int = 0, iters: int = 20,
                  conv: str = "operator", command: str = "") -> dict:
    """The table for the run's `which` checkpoint (EMA weights) at the first `examples` of `split`;
    writes OUT/lipschitz.md and OUT/lipschitz.json (OUT defaults to RUN_DIR)."""
    cfg, model, state = load_trained(run_dir, which=which, device="cpu")
    out = Path(out) if out else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    x = model_inputs(model, make_source(cfg, data_dir).tensors(split, examples), gen)
    r = lipschitz_table(model, x, iters=iters, conv=conv, seed=seed)
    r.update(run_dir=str(run_dir), split=split, checkpoint=state["checkpoint"], step=state["step"],
             model=cfg.model.name, command=command)
    (out / "lipschitz.json").write_text(json.dumps(jsonable(r), indent=2))
    (out / "lipschitz.md").write_text(render_markdown(r))
    return r
