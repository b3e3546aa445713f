"""The configs shipped with the package (`flowforge/configs/*.toml`, package data): found by name,
so `flowforge train glow-mnist` works after `pip install`; `flowforge configs` lists them."""

from __future__ import annotations

from pathlib import Path

from flowforge.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[1] / "configs"


def shipped_configs() -> dict[str, Path]:
    """name -> path of every shipped config."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.toml"))}


def description(path: Path) -> str:
    """The first comment line of a config file (its one-line description)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def config_path(name_or_path: str | Path) -> Path:
    """A config file's path: an existing file as given, else the shipped config of that name
    ("glow-mnist", "glow-mnist.toml" or a checkout's "configs/glow-mnist.toml")."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.stem if path.suffix == ".toml" and path.parent in (Path("."), Path("configs")) else str(name_or_path)
    shipped = shipped_configs()
    if name in shipped:
        return shipped[name]
    raise ConfigError(f"{name_or_path}: no such config file, and no shipped config of that name "
                      f"(`flowforge configs` lists them: {', '.join(shipped)})")
