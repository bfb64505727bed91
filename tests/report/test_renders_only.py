"""report/ only renders a Comparison: none of its modules imports what runs one."""

import ast
from pathlib import Path

import quantlens

REPORT = Path(quantlens.__file__).parent / "report"
# the comparison's values and the analysis result types may be read; nothing that measures
ALLOWED = (
    "quantlens.compare.results",
    "quantlens.compare.settings",
    "quantlens.compare.recommend",
    "quantlens.analysis.layers",
    "quantlens.analysis.ranges",
    "quantlens.analysis.sensitivity",
    "quantlens.analysis.planner",
    "quantlens.errors",
    "quantlens.files",
    "quantlens.report",
)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("quantlens"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("quantlens")}
    return found


def test_report_modules_import_no_run():
    wrong = [
        f"{path.name} imports {name}"
        for path in sorted(REPORT.glob("*.py"))
        for name in _imports(path)
        if not any(name == ok or name.startswith(ok + ".") for ok in ALLOWED)
    ]
    assert not wrong, "report/ must only render:\n" + "\n".join(wrong)


def test_the_check_sees_an_import_of_the_run(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from quantlens.compare.run import run_comparison\n")
    assert _imports(bad) == {"quantlens.compare.run"}
