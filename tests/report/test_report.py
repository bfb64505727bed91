import json
import math

import pytest
from helpers import strict_json

from quantlens.errors import InputError
from quantlens.report import Report
from quantlens.report.plots import PLOT_FILES, pareto_front


def test_best_respects_the_budget_and_the_objective(synthetic_report):
    r = synthetic_report
    assert r.best(max_accuracy_drop=1.0, objective="latency").name == "static"
    assert r.best(max_accuracy_drop=0.3, objective="latency").name == "dynamic"
    assert r.best(max_accuracy_drop=5.0, objective="size").name == "w4"
    assert r.best(max_accuracy_drop=1.0, objective="size").name == "static"
    assert r.best(max_accuracy_drop=0.1) is None
    with pytest.raises(InputError, match="objective"):
        r.best(objective="speed")


def test_recommendation_says_what_it_buys_and_costs(synthetic_report):
    text = synthetic_report.recommendation()
    assert text.startswith("Use static")
    assert "4.00× smaller" in text and "2.50× faster" in text and "(0.50 points lower)" in text
    keep = Report(synthetic_report.comparison, max_accuracy_drop=0.1).recommendation()
    assert keep.startswith("Keep the float model") and "dynamic" in keep


def test_markdown_has_every_row_and_the_failure(synthetic_report):
    md = synthetic_report.to_markdown()
    assert "| static | 98.50 (-0.50) |" in md
    assert "| qat | failed |" in md and "QAT needs labels" in md
    assert (
        "| 4.00 | 3.60 |" in md and "| 1.00 (4.00× smaller) |" in md
    )  # float: no ratio; static 4x smaller
    assert "| 4.000 (5.500) | 2.50× |" in md  # median (p95) and speed-up
    assert "Command: `quantlens compare" in md


def test_csv_and_json_round_trip(synthetic_report, tmp_path):
    text = synthetic_report.to_csv(tmp_path / "r.csv")
    lines = text.strip().splitlines()
    assert len(lines) == 6 and lines[0].startswith("name,method,status")
    synthetic_report.to_json(tmp_path / "r.json")
    data = strict_json((tmp_path / "r.json").read_text())
    assert data["recommended"] == "static" and len(data["rows"]) == 5
    assert data["rows"][0]["sqnr_db"] is None and data["non_finite"] == {"/rows/0/sqnr_db": "inf"}
    again = Report.from_json(tmp_path / "r.json")
    assert [r.name for r in again.rows] == [r.name for r in synthetic_report.rows]
    assert math.isinf(again.rows[0].sqnr_db) and again.rows[1].sqnr_db == 25.0
    assert again.recommended.name == "static"
    assert again.rows[4].sqnr_db is None  # the failed row: not measured stays None


def test_json_is_strict_everywhere_and_layer_infinities_come_back(synthetic_report, tmp_path):
    synthetic_report.layer_errors["static"][0]["own_sqnr_db"] = float("inf")
    synthetic_report.rows[2].sqnr_db = float("nan")
    text = synthetic_report.to_json(tmp_path / "r.json")
    data = strict_json(text)
    assert data["non_finite"]["/layer_errors/static/0/own_sqnr_db"] == "inf"
    assert data["non_finite"]["/rows/2/sqnr_db"] == "nan"
    again = Report.from_json(tmp_path / "r.json")
    assert math.isinf(again.layer_errors["static"][0]["own_sqnr_db"]) and math.isnan(
        again.rows[2].sqnr_db
    )


def test_json_written_by_an_older_version_with_bare_infinity_still_reads(
    synthetic_report, tmp_path
):
    data = synthetic_report.to_dict()
    (tmp_path / "old.json").write_text(json.dumps(data, default=str, allow_nan=True))
    assert "Infinity" in (tmp_path / "old.json").read_text()
    assert math.isinf(Report.from_json(tmp_path / "old.json").rows[0].sqnr_db)


def test_pareto_front():
    points = [(10.0, 99.0, "float"), (6.0, 98.8, "dyn"), (4.0, 98.5, "st"), (9.0, 96.0, "w4")]
    assert [p[2] for p in pareto_front(points)] == ["st", "dyn", "float"]


@pytest.mark.slow
def test_plots_are_written_as_pngs(synthetic_report, tmp_path):
    from PIL import Image

    paths = synthetic_report.plot(tmp_path)
    assert [p.name for p in paths] == list(PLOT_FILES)
    for p in paths:
        with Image.open(p) as img:
            assert img.format == "PNG" and img.width >= 600 and img.height >= 300


@pytest.mark.slow
def test_html_is_self_contained_and_ordered(synthetic_report, tmp_path):
    path = synthetic_report.to_html(tmp_path / "report.html")
    html = path.read_text()
    assert html.count("data:image/png;base64,") == len(PLOT_FILES)
    assert 'src="http' not in html and "<script" not in html
    order = [
        html.index(s)
        for s in ("Recommendation.", "<table>", "<h2>Plots", "<h2>Environment", "<h2>Command")
    ]
    assert order == sorted(order)
    assert "Use static" in html and "quantlens compare digits-cnn" in html and "Test CPU" in html


def test_no_speed_up_means_keep_float_for_speed(synthetic_report):
    for row in synthetic_report.rows[1:]:
        if row.ok:
            row.latency_ms = 50.0
    text = synthetic_report.recommendation()
    assert text.startswith("No method is faster than float") and "static is 4.0× smaller" in text
    assert text.endswith("(accuracy: 0.50 points lower).")


def test_tiny_changes_read_zero_and_gains_read_as_gains(synthetic_report):
    static = synthetic_report.row("static")
    static.accuracy = 99.0 - 1e-4  # rounds to -0.00
    md = synthetic_report.to_markdown()
    assert "| static | 99.00 (0.00) |" in md and "-0.00" not in md
    assert "(no change)" in synthetic_report.recommendation()
    static.accuracy = 99.25
    assert "(0.25 points higher)" in synthetic_report.recommendation()
    assert "| static | 99.25 (+0.25) |" in synthetic_report.to_markdown()


@pytest.mark.slow
def test_embedding_quality_is_labelled_similarity(synthetic_report, tmp_path):
    synthetic_report.comparison.settings["task"] = "embedding"
    md = synthetic_report.to_markdown()
    assert "| method | similarity % |" in md and "accuracy %" not in md
    assert "similarity to float 98.50% vs 99.00% float" in synthetic_report.recommendation()
    page = synthetic_report.to_html(tmp_path / "r.html").read_text()
    assert "<th>similarity %</th>" in page and "<th>accuracy %</th>" not in page


def test_a_report_without_rows_writes_no_plot_and_no_warning(tmp_path):
    import warnings

    from quantlens.compare.results import Comparison

    empty = Report(Comparison([], {}, None, {}, interrupted=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels" would fail here
        assert empty.plot(tmp_path) == []
        page = empty.to_html(tmp_path / "r.html").read_text()
    assert "Interrupted before the first model was measured" in page
    assert "nothing to recommend" in empty.to_markdown()
