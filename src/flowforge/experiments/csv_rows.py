"""Appending rows to an experiment's CSV log (header written with the first row)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


def append_row(path: Path, columns: Sequence[str], row: dict) -> None:
    """Append `row` (floats to 6 significant digits) under `columns`, writing the header first."""
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, columns)
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
