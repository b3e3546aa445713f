"""An experiment's own training loop: its fresh run directory and the rows of its CSV log (header
written with the first row)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from flowforge.runs.config import dump_toml
from flowforge.runs.run_dir import RunPaths


def append_row(path: Path, columns: Sequence[str], row: dict) -> None:
    """Append `row` (floats to 6 significant digits) under `columns`, writing the header first."""
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, columns)
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def fresh_run_dir(cfg, run_dir: str | Path, log_name: str) -> tuple[RunPaths, Path]:
    """(paths, log path) of `run_dir` made ready for a new run: the resolved config written and the
    CSV log `log_name` emptied."""
    paths = RunPaths(Path(run_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(dump_toml(cfg))
    log_path = paths.root / log_name
    log_path.unlink(missing_ok=True)
    return paths, log_path
