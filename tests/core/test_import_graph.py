"""The package's shape: no import circles, no oversized modules.

Imports are read with `ast`, not by importing: every `import atb...` / `from atb... import`
anywhere in a module counts (module level, inside functions, under TYPE_CHECKING), because
a deferred import that closes a circle is still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ATB = Path(__file__).parents[2] / "atb"
MAX_LINES = 500


def module_files() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for path in ATB.rglob("*.py"):
        parts = list(path.relative_to(ATB.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The module (or package) a dotted import name lands in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {_owner(a.name, modules) for a in node.names if a.name.startswith("atb")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if not source.startswith("atb"):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else _owner(source, modules))
    found.discard(None)
    found.discard(module)
    return {m for m in found if m is not None}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = cycles(graph)
    report = [
        " <-> ".join(c) + ": " + "; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c)
        for c in found
    ]
    assert not found, "import circles in atb/:\n" + "\n".join(report)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_deferred_and_relative_imports_are_edges(tmp_path: Path) -> None:
    modules = {"atb.x": tmp_path / "x.py", "atb.y": tmp_path / "y.py", "atb": tmp_path / "i.py"}
    modules["atb.x"].write_text("def f():\n    from atb.y import thing\n")
    modules["atb.y"].write_text("from . import x\n")
    assert imports_of("atb.x", modules["atb.x"], modules) == {"atb.y"}
    assert imports_of("atb.y", modules["atb.y"], modules) == {"atb.x"}


def test_no_module_over_500_lines() -> None:
    over = {}
    for path in ATB.rglob("*.py"):
        rel = path.relative_to(ATB).as_posix()
        if "/migrations/" in f"/{rel}":
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            over[rel] = lines
    assert not over, f"modules over {MAX_LINES} lines (split them by job): {over}"
