"""Imports point down only (DESIGN.md, layout): every `flowforge` import in src/, at module level
or inside a function, goes from a layer to the same or a lower one, and no two modules import
each other in a circle. The layers, lowest first:"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "flowforge"

LAYERS = ["errors", "progress", "data", "nets", "bijections", "distributions", "flow", "objectives", "models", "evaluation",
          "diagnostics", "viz", "training", "runs", "experiments", "bench", "commands", "cli"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every flowforge module named by an import in `path` (absolute and relative, any depth)."""
    found = set()
    package = _module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "flowforge"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "flowforge":
                found.add(module)
                found |= {f"{module}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = defaultdict(set)
    for name, path in modules.items():
        for target in _imports(path):
            while target not in modules and "." in target:  # `from pkg.mod import name`
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # the package facade `flowforge` itself is the top


def test_every_module_is_in_a_layer():
    unknown = {_layer(m) for m in _graph()} - set(LAYERS) - {None}
    assert not unknown, f"packages without a layer in LAYERS: {sorted(unknown)}"


def test_imports_point_down_only():
    upward = []
    for source, targets in _graph().items():
        if _layer(source) is None:
            continue
        for target in targets:
            if _layer(target) is None:
                upward.append(f"{source} -> {target} (the package facade)")
            elif LAYERS.index(_layer(target)) > LAYERS.index(_layer(source)):
                upward.append(f"{source} -> {target}")
    assert not upward, "imports pointing up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_circles():
    graph = _graph()
    circles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not circles, "import circles:\n" + "\n".join(circles)
