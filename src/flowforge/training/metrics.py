"""metrics.csv (one row per event) and, when the `tensorboard` package is installed, TensorBoard
events beside it."""

from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ("step", "event", "elapsed_s", "lr", "train_loss", "train_bpd", "valid_bpd", "train_nll", "valid_nll",
           "examples_per_s")
# written every train.diagnose_every steps (flowforge.diagnostics.during_training.COLUMNS)
COLUMNS += ("recon_mean", "recon_max", "recon_non_finite", "condition_median", "condition_max")
# classifiers (runs/data_sources.py ClassifierSource): selection metric, regulariser penalty on the
# steps it applies to, and the training dynamics of flowforge.diagnostics.inn_dynamics
COLUMNS += ("train_accuracy", "valid_accuracy", "train_penalty", "sigma_max", "sigma_min", "condition_non_finite",
            "dynamics_accuracy")
# reverse-KL fits to an energy (runs/energy_source.py): negative ELBO on the training draws and on validation draws
COLUMNS += ("train_neg_elbo", "valid_neg_elbo")


class MetricsLog:
    """Append-only CSV of training events. On resume from step S, rows after S (work lost with
    the interrupted job) are dropped so the file describes exactly the run that continues."""

    def __init__(self, path: Path, resume_step: int | None = None, tensorboard: bool = True):
        self.path = path
        if resume_step is not None and path.is_file():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            self._write_all(rows)
        elif not path.is_file() or resume_step is None:
            self._write_all([])
        self.writer = _tensorboard_writer(path.parent) if tensorboard else None

    def _write_all(self, rows: list[dict]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS)
            w.writeheader()
            w.writerows(rows)
        tmp.replace(self.path)

    def log(self, step: int, event: str, **values: float) -> None:
        row = {"step": step, "event": event, **{k: f"{v:.6g}" for k, v in values.items()}}
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown metric columns {sorted(unknown)}; known: {COLUMNS}")
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow(row)
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{event}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(log_dir=str(log_dir / "tensorboard"))
