"""Rooms with one job each: no module of the four packages over 600 lines, no function over 80
(docstring included), and the ``Text2Tracks`` class under about 400. Parsed with ``ast``,
nothing imported; a failure names the module or function to split."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("semantic_ids", "text2tracks", "training", "eval")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MAX_API_CLASS_LINES = 400


def _sources():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path.relative_to(REPO), path.read_text(encoding="utf-8")


def test_no_module_is_over_600_lines():
    sources = list(_sources())
    assert len(sources) > 50  # the packages were found
    long = {str(p): s.count("\n") for p, s in sources if s.count("\n") > MAX_MODULE_LINES}
    assert not long, f"split these modules by the jobs they do: {long}"


def test_no_function_is_over_80_lines():
    long = {}
    for path, source in _sources():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path}:{node.lineno} {node.name}"] = lines
    assert not long, f"split these functions into named steps: {long}"


def test_the_api_class_stays_small():
    source = (REPO / "text2tracks" / "pipeline.py").read_text(encoding="utf-8")
    (cls,) = [
        n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Text2Tracks"
    ]
    assert cls.end_lineno - cls.lineno + 1 <= MAX_API_CLASS_LINES
