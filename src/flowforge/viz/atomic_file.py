"""Figures and images are written atomically: into a temporary file beside the target, then
renamed over it, so an interrupted run never leaves a truncated PNG. The temporary file is
created by an ordinary `open`, so the result has the usual permissions (umask), not mkstemp's 0600."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` for a temporary path beside `path`, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """A matplotlib figure as PNG at `path`, atomically."""
    return write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
