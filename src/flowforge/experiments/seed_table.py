"""Mean and spread of a metric over seeds, per group of runs (a variant run with several seeds).

A seed whose metric is inf or NaN is kept: it is counted in the group's `non_finite` and the group's
mean, std and min–max are then those of the finite seeds only, with the count shown beside them,
so that a diverged seed is never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _summary(values: list[float]) -> dict:
    finite = [v for v in values if math.isfinite(v)]
    n = len(finite)
    mean = sum(finite) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else math.nan
    return {"n": len(values), "non_finite": len(values) - n, "mean": mean, "std": std,
            "min": min(finite) if n else math.nan, "max": max(finite) if n else math.nan, "values": values}


def aggregate(rows: Sequence[dict], keys: Sequence[str], value: str) -> list[dict]:
    """One entry per distinct combination of `keys` (in first-seen order) with the `value`s of its
    rows and their count, mean, sample standard deviation (n - 1; NaN for one seed), min and max."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(float(r[value]))
    return [{**dict(zip(keys, key)), **_summary(values)} for key, values in groups.items()]


def _num(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.4f}"


def seeds_table(groups: Sequence[dict], keys: Sequence[str], what: str) -> str:
    """Markdown table of `aggregate`'s groups: mean ± std, min–max, seeds (and the non-finite ones)."""
    lines = ["| " + " | ".join(keys) + f" | seeds | {what} mean | std | min – max |",
             "|" + "---|" * (len(keys) + 4)]
    for g in groups:
        seeds = f"{g['n']}" + (f" ({g['non_finite']} non-finite)" if g["non_finite"] else "")
        lines.append("| " + " | ".join(str(g[k]) for k in keys) +
                     f" | {seeds} | {_num(g['mean'])} | {_num(g['std'])} | {_num(g['min'])} – {_num(g['max'])} |")
    return "\n".join(lines)
