"""`flowforge configs`: the shipped configs (package data), one line each; any of them trains by name
(`flowforge train NAME`)."""

from __future__ import annotations

from flowforge.runs.shipped_configs import description, shipped_configs


def run(args) -> int:
    shipped = shipped_configs()
    width = max(map(len, shipped))
    for name, path in shipped.items():
        print(f"{name:<{width}}  {description(path)}")
    return 0


def add_parser(sub, common) -> None:
    p = sub.add_parser("configs", help="list the shipped configs (train one with `flowforge train NAME`)")
    p.set_defaults(func=run)
