"""Imports run one way: ``semantic_ids`` < ``text2tracks`` < ``training`` < ``eval``.

Every module of the four packages is parsed with ``ast`` (nothing is imported), and every import
in it, at module level or inside a function, is checked: no module may import a package of a
higher layer, and the modules of the project import each other without a cycle. An exception
must be named in an allow-list below with the reason it is there, so that it is seen and
removed rather than copied.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"semantic_ids": 0, "text2tracks": 1, "training": 2, "eval": 3}

# (importing module, imported module) -> why it is still allowed. Remove an entry with its import.
UPWARD_ALLOWED: dict[tuple[str, str], str] = {}
CYCLES_ALLOWED: dict[frozenset[str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def imports_of(module: str, path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import statement of a file, wherever it sits
    (module level, functions, ``if TYPE_CHECKING`` blocks); relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # "from pkg import mod" imports the module pkg.mod when there is one
            found.extend((f"{target}.{alias.name}", node.lineno) for alias in node.names)
    return found


def _graph() -> dict[str, dict[str, int]]:
    """module -> {project module it imports: line}."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(module, path):
            if target in modules and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def test_the_parser_sees_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "pkg" / "mod.py"
    source.parent.mkdir()
    source.write_text(
        "import os\n\ndef f():\n    from eval import metrics\n    from . import sib\n"
        "    from .sub import thing\n",
        encoding="utf-8",
    )
    got = {t for t, _ in imports_of("pkg.mod", source)}
    assert {"os", "eval", "eval.metrics", "pkg", "pkg.sib", "pkg.sub", "pkg.sub.thing"} <= got


def test_no_module_imports_a_higher_layer():
    modules = _modules()
    upward, used = [], set()
    for module, path in modules.items():
        own = LAYERS[module.split(".")[0]]
        for target, line in imports_of(module, path):
            top = target.split(".")[0]
            if top not in LAYERS or LAYERS[top] <= own:
                continue
            key = (module, target)
            if key in UPWARD_ALLOWED or (
                target not in modules and (module, target.rpartition(".")[0]) in UPWARD_ALLOWED
            ):
                used.add(key if key in UPWARD_ALLOWED else (module, target.rpartition(".")[0]))
                continue
            upward.append(
                f"{path.relative_to(REPO)}:{line} imports {target} ({module.split('.')[0]} < {top})"
            )
    assert not upward, "imports that run upward:\n" + "\n".join(upward)
    stale = set(UPWARD_ALLOWED) - used
    assert not stale, f"allow-list entries no longer needed (remove them): {sorted(stale)}"


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules():
    graph = _graph()
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    for module, edges in graph.items():
        for target in list(edges):
            if target.startswith(module + ".") or module.startswith(target + "."):
                del edges[target]
    cycles = [c for c in _cycles(graph) if frozenset(c) not in CYCLES_ALLOWED]
    assert not cycles, "import cycles (function-level imports included):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_the_catalog_and_content_ids_cycle_is_gone():
    graph = _graph()
    assert "semantic_ids.catalog" in graph["semantic_ids.content_ids"]
    assert "semantic_ids.content_ids" not in graph["semantic_ids.catalog"]


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_package_is_seen(package):
    assert any(m.split(".")[0] == package for m in _modules())


def test_no_private_name_is_imported_across_modules():
    """``from project.module import _name`` reaches into another module's internals: make the
    name public where it is shared."""
    crossing = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] not in LAYERS:
                    continue
                crossing += [
                    f"{name}: from {node.module} import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert not crossing, crossing
