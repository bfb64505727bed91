"""Imports flow one way: each part of the package imports only from the parts above it."""

import ast
from pathlib import Path

import pytest

import quantlens

PACKAGE = Path(quantlens.__file__).parent
# top to bottom, as in the README's layout
LAYERS = [
    "errors",
    "files",
    "core",
    "testing",
    "zoo",
    "sources",
    "nn",
    "methods",
    "checkpoint",
    "export",
    "api",
    "eval",
    "analysis",
    "compare",
    "report",
    "cli",
]


def _part(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_parts(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # function bodies too
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] == "quantlens"
        ):
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("quantlens.")}
    return found


@pytest.mark.slow
def test_every_part_imports_only_from_the_parts_above_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = _part(path)
        if part in ("__init__", "__main__"):
            continue
        assert part in LAYERS, f"{path.relative_to(PACKAGE)} is in no layer; add it to LAYERS"
        allowed = set(LAYERS[: LAYERS.index(part) + 1])
        wrong += [
            f"{path.relative_to(PACKAGE)} imports quantlens.{p}"
            for p in _imported_parts(path) - allowed
        ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from quantlens.report import Report\n")
    assert _imported_parts(bad) == {"report"}
