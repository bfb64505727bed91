"""The report's tables are byte-for-byte stable: a results.json written by ``quantlens
compare`` (``golden/*/results.json``: the default run, and a run with ``--analysis``)
renders to the Markdown, CSV, JSON and HTML stored beside it. Regenerate the expected
files only for a deliberate change of the report:
``QUANTLENS_GOLDEN=write pytest tests/report/test_golden.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quantlens.report import Report
from quantlens.report.analysis_plots import ANALYSIS_PLOT_FILES
from quantlens.report.plots import PLOT_FILES

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "results.json").is_file())


def _rendered(report: Report, tmp_path: Path) -> dict[str, str]:
    plots = tmp_path / "plots"  # stand-in PNGs: their bytes are embedded, nothing is drawn
    plots.mkdir()
    for name in (*PLOT_FILES, *ANALYSIS_PLOT_FILES.values()):
        (plots / name).write_bytes(name.encode())
    report.to_html(tmp_path / "report.html", plot_dir=plots)
    return {
        "report.md": report.to_markdown(),
        "results.csv": report.to_csv(),
        "report.html": (tmp_path / "report.html").read_text(encoding="utf-8"),
    }


@pytest.mark.parametrize("case", CASES)
def test_a_stored_comparison_renders_to_the_same_bytes(case, tmp_path):
    folder = GOLDEN / case
    report = Report.from_json(folder / "results.json")
    for name, text in _rendered(report, tmp_path).items():
        if os.environ.get("QUANTLENS_GOLDEN") == "write":
            (folder / name).write_text(text, encoding="utf-8")
        assert text == (folder / name).read_text(encoding="utf-8"), f"{case}/{name} changed"


@pytest.mark.parametrize("case", CASES)
def test_the_stored_json_reads_back_to_the_same_bytes(case):
    path = GOLDEN / case / "results.json"
    assert Report.from_json(path).to_json() == path.read_text(encoding="utf-8")
