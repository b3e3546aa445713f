"""Non-finite samples are never drawn silently: each image with a NaN or infinite value becomes a
red cell with a white cross in its grid, and every figure records how many it had in
DIR/nonfinite.json beside it (read by report.md and `flowforge eval`) and says so on stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from flowforge.data.quantisation import to_uint8
from flowforge.viz.atomic_file import write_atomically

RECORD_FILE = "nonfinite.json"
_RED = (220, 0, 0)
_WHITE = (255, 255, 255)


def non_finite_rows(x: torch.Tensor) -> torch.Tensor:
    """Boolean (N,): which of the N samples hold a NaN or infinite value."""
    return ~torch.isfinite(x.detach()).reshape(len(x), -1).all(dim=1)


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    return images if images.shape[1] == 3 else images.expand(-1, 3, -1, -1).contiguous()


def mark(images: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) images with the `bad` ones replaced by a red cell with a white cross
    (RGB when any is bad, unchanged otherwise)."""
    bad = bad.cpu()
    if not bool(bad.any()):
        return images
    out = to_rgb(images.cpu()).clone()
    _, _, h, w = out.shape
    cell = torch.tensor(_RED, dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).clone()
    for i in range(min(h, w)):  # the two diagonals, two pixels wide where the cell allows
        for y, x in ((i, round(i * (w - 1) / max(h - 1, 1))), (i, round((h - 1 - i) * (w - 1) / max(h - 1, 1)))):
            cell[:, y, x] = torch.tensor(_WHITE, dtype=torch.uint8)
            if x + 1 < w:
                cell[:, y, x + 1] = torch.tensor(_WHITE, dtype=torch.uint8)
    out[bad] = cell
    return out


def show(x: torch.Tensor, n_bits: int) -> tuple[torch.Tensor, int]:
    """(uint8 images with non-finite samples marked, how many were non-finite) of model-space `x`."""
    bad = non_finite_rows(x)
    return mark(to_uint8(torch.nan_to_num(x, nan=0.0), n_bits).cpu(), bad), int(bad.sum())


def same_channels(rows: list[torch.Tensor]) -> list[torch.Tensor]:
    """Rows of a figure with one channel count: RGB for all when any row is RGB (a marked cell)."""
    return [to_rgb(r) for r in rows] if any(r.shape[1] == 3 for r in rows) else rows


def record(path: Path, non_finite: int, total: int, what: str = "samples") -> None:
    """Note in PATH's folder how many of the `total` samples of figure PATH were non-finite, and
    say so on stderr when any were."""
    path = Path(path)
    file = path.parent / RECORD_FILE
    try:
        entries = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        entries = {}
    if not isinstance(entries, dict):
        entries = {}
    if non_finite or path.name in entries:
        entries[path.name] = {"non_finite": non_finite, "total": total}
        text = json.dumps(entries, indent=2, sort_keys=True) + "\n"
        write_atomically(file, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    if non_finite:
        print(f"warning: {non_finite} of {total} {what} in {path} are non-finite (NaN or inf); "
              "drawn as red cells with a white cross", file=sys.stderr)


def recorded(root: Path) -> list[tuple[Path, int, int]]:
    """(figure, non-finite, total) of every figure under ROOT recorded with non-finite samples."""
    out = []
    for file in sorted(Path(root).rglob(RECORD_FILE)):
        try:
            entries = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, OSError):
            continue
        if not isinstance(entries, dict):
            continue
        for name, e in sorted(entries.items()):
            if isinstance(e, dict) and isinstance(e.get("non_finite"), int) and e["non_finite"] > 0:
                out.append((file.parent / name, e["non_finite"], int(e.get("total", 0))))
    return out
