"""The typed results: a stored results.json reads back into typed rows, settings, budget,
per-layer errors and analysis; older files without the newer keys still load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from quantlens.analysis.layers import LayerComparison
from quantlens.analysis.ranges import RangeReport
from quantlens.analysis.sensitivity import SensitivityResult
from quantlens.compare import Budget, Comparison, LayerErrorRow, RunInfo
from quantlens.compare.recommend import points_change, quality_names
from quantlens.files.strict_json import from_json_text, to_json_text
from quantlens.report import Report

GOLDEN = Path(__file__).parents[1] / "report" / "golden"


def _load(case: str) -> Comparison:
    return Comparison.from_json((GOLDEN / case / "results.json").read_text(encoding="utf-8"))


def test_a_stored_comparison_reads_back_typed():
    c = _load("default")
    assert [r.name for r in c.rows] == ["float", "dynamic", "static", "qat", "w8", "w4"]
    assert isinstance(c.settings, RunInfo) and c.settings.task == "classification"
    assert c.settings.reps == 20 and c.settings.calibration is None
    assert c.budget == Budget(1.0, "latency") and c.baseline is c.rows[0]
    assert math.isinf(c.baseline.sqnr_db)  # written as null + a "non_finite" pointer
    assert c.recommended.name == "static" and c.recommendation.startswith("Use static: 2.83×")
    errors = c.layer_errors["static"]
    assert all(isinstance(x, LayerErrorRow) for x in errors) and any(x.jump for x in errors)
    assert c.analysis is None


def test_the_analysis_is_typed_and_writes_back_the_same_dict():
    c = _load("analysis")
    a = c.analysis
    assert a is not None and a.row == "static"
    assert isinstance(a.sensitivity, SensitivityResult) and a.sensitivity.rows
    assert isinstance(a.layers, LayerComparison) and isinstance(a.ranges, RangeReport)
    stored = from_json_text((GOLDEN / "analysis" / "results.json").read_text(encoding="utf-8"))
    assert json.loads(to_json_text(a.to_dict())) == json.loads(to_json_text(stored["sensitivity"]))


def test_the_budget_changes_the_recommendation():
    c = _load("default")
    assert c.best(Budget(1.0, "size")).name == "w4"  # smallest on disk, 0.22 points lost
    assert c.best(Budget(0.1, "size")).name == "qat"  # w4 is over budget; qat gained 0.22
    assert c.accuracy_drop(c.row("w4")) == pytest.approx(0.2222, abs=1e-3)
    c.budget = Budget(0.0, "latency")
    assert c.recommended.name == "static"  # no change in accuracy: still within budget


def test_records_still_answer_dict_style_lookups():
    c = _load("default")
    row = c.layer_errors["static"][0]
    assert row["name"] == row.name and "own_sqnr_db" in row and "nothing" not in row
    row["own_sqnr_db"] = 1.5
    assert row.own_sqnr_db == 1.5
    c.settings["task"] = "embedding"
    assert c.settings.task == "embedding" and c.settings.get("nothing", 7) == 7
    with pytest.raises(KeyError):
        row["nothing"] = 1


def test_a_file_of_an_older_version_loads(tmp_path):
    data = from_json_text((GOLDEN / "default" / "results.json").read_text(encoding="utf-8"))
    for key in ("recommended", "recommendation", "max_accuracy_drop", "objective"):
        data.pop(key)
    data.pop("layer_errors")
    data["settings"]["from_the_future"] = {"kept": True}
    (tmp_path / "old.json").write_text(to_json_text(data), encoding="utf-8")
    report = Report.from_json(tmp_path / "old.json")
    assert report.max_accuracy_drop == 1.0 and report.objective == "latency"
    assert report.recommended.name == "static" and report.layer_errors == {}
    assert report.to_dict()["settings"]["from_the_future"] == {"kept": True}


def test_quality_names_and_points():
    c = _load("default")
    assert quality_names(c.rows, "classification") == ("accuracy (%)", "accuracy %")
    assert quality_names(c.rows, "embedding")[1] == "similarity %"
    assert quality_names([], None)[1] == "accuracy %"
    assert (points_change(-0.004), points_change(0.2222), points_change(-1.5)) == (
        "no change",
        "0.22 points higher",
        "1.50 points lower",
    )
