"""What every `reproduce` experiment shares: variants as typed config values (turned into the
`section.field=value` overrides the config loader takes) and the training budget of --steps /
--minutes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowforge.runs.config import toml_value

Variant = Mapping[str, Mapping[str, Any]]  # {"model": {"name": "maf", "layers": 10}, ...}


def overrides(variant: Variant) -> list[str]:
    """`{"model": {"layers": 10}}` -> `["model.layers=10"]`, values written as TOML literals."""
    return [f"{section}.{field}={toml_value(value)}" for section, fields in variant.items()
            for field, value in fields.items()]


def merged(*variants: Variant) -> dict[str, dict[str, Any]]:
    """The variants' sections merged, later values winning."""
    out: dict[str, dict[str, Any]] = {}
    for variant in variants:
        for section, fields in variant.items():
            out.setdefault(section, {}).update(fields)
    return out


def budget(steps: int | None, minutes: float | None) -> list[str]:
    """Overrides for a run's training budget: `steps`, and/or `minutes` of training time (with minutes
    alone the step limit is lifted); neither keeps the config's."""
    out = [f"train.max_steps={steps}"] if steps else []
    if minutes:
        out += [f"train.max_minutes={minutes}"] + ([] if steps else ["train.max_steps=1000000000"])
    return out
