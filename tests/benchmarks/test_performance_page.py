"""docs/performance.md is generated from benchmarks/results/*.json and kept in step."""

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import performance_page


def test_committed_page_matches_the_committed_results():
    assert performance_page.main(["--check"]) == 0, "run python benchmarks/performance_page.py"


def test_a_results_file_becomes_a_section_with_its_date_machine_and_rows(tmp_path):
    (tmp_path / "int8_static.json").write_text(
        json.dumps(
            {
                "date": "2026-12-06",
                "threads": 2,
                "torch": "2.13.0",
                "speedup_b8": 5.0512,
                "rows": [
                    {"model": "resnet18", "median_ms": 7.12345, "p95_ms": 8.0},
                    {"model": "digits|cnn", "median_ms": 0.5, "extra": {"a": 1}},
                ],
            }
        )
    )
    (tmp_path / "undated_1thread.json").write_text(json.dumps({"rows": [{"x": 1e-7}]}))
    page = performance_page.render(tmp_path)
    assert "## int8_static" in page and "`benchmarks/int8_static.py`" in page
    assert "Run: date: 2026-12-06; threads: 2; torch: 2.13.0." in page
    assert "| speedup_b8 | 5.051 |" in page
    assert "| model | median_ms | p95_ms | extra |" in page
    assert "| resnet18 | 7.123 | 8 |  |" in page
    assert "| digits\\|cnn | 0.5 |  | a=1 |" in page
    assert "## undated_1thread" in page and "Run date not recorded" in page
    assert "| 1.000e-07 |" in page and "(no script found)" in page


def test_write_results_stamps_the_date_and_writes_atomically(tmp_path):
    from _results import write_results

    out = tmp_path / "bench.json"
    write_results(out, {"rows": []})
    data = json.loads(out.read_text())
    assert list(data) == ["date", "rows"] and len(data["date"]) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]
