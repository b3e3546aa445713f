"""Training of the INN classifier (Behrmann et al. 2021, section 6; NOTES d.1/d.2) for the
experiments: the shared Trainer (runs/trainer.py) selects it on validation accuracy
(runs/data_sources.py ClassifierSource), passes each step's index to `model.loss` (the FD
regulariser applies on every `fd_every`-th step) and, with train.diagnose_every = N > 0, logs a
"diagnose" row at step 0 and every N steps to metrics.csv: sigma_max, sigma_min and the condition
number of J_F by power iteration and the accuracy on the first validation images
(diagnostics/inn_dynamics.py; supplement G, figures 14-17). Runs resume like any other."""

from __future__ import annotations

from pathlib import Path

from flowforge.runs.config import RunConfig
from flowforge.runs.trainer import Trainer


def train_classifier(cfg: RunConfig, run_dir: str | Path, data_dir: str | None = None,
                     progress: bool = True) -> dict:
    """Train the classifier `cfg` describes into `run_dir` (checkpoints/best: the best validation
    accuracy); returns steps, training seconds, best validation accuracy and its step, skipped steps."""
    state = Trainer(cfg, run_dir, data_dir=data_dir, progress=progress).fit()
    return {"steps": state.step, "train_seconds": state.elapsed_seconds, "best_valid_accuracy": state.best_valid,
            "best_step": state.best_step, "skipped_steps": state.skipped_steps}
