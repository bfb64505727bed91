"""``ql.compare(..., analysis=True)``: the sensitivity of the recommended method joins the
JSON, the plots and the HTML report (digits-cnn, a small subset, tiny latency settings)."""

from __future__ import annotations

import json

import pytest
import torch

import quantlens as ql
from quantlens import zoo
from quantlens.report import Report, compare


@pytest.fixture(scope="module")
def analysed() -> Report:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = zoo.load_model("digits-cnn")
        test = zoo.load_dataset("digits", "test")
        calib = zoo.load_dataset("digits", "calib").inputs[:64]
        return compare(model, {"static": ql.Static(observer="minmax", calib_batches=1)},
                       data=(test.inputs[:128], test.labels[:128]), calib_data=calib, reps=2, warmup=0,
                       memory=False, analysis=True, analysis_batches=2)
    finally:
        torch.set_num_threads(threads)


def test_the_json_has_the_sensitivity_ranking_of_the_recommended_method(analysed, tmp_path):
    assert analysed.recommended is not None and analysed.recommended.name == "static"
    data = json.loads(analysed.to_json(tmp_path / "results.json"))
    sens = data["sensitivity"]
    assert sens["row"] == "static" and sens["metric"] == "accuracy" and sens["samples"] == 128
    assert sens["config"]["method"] == "static"
    rows = sens["rows"]
    assert len(rows) >= 5 and all(r["params"] > 0 for r in rows)
    assert [r["drop"] for r in rows] == sorted((r["drop"] for r in rows), reverse=True)
    back = Report.from_json(tmp_path / "results.json")
    assert back.sensitivity["rows"] == rows


def test_the_html_embeds_the_sensitivity_plot(analysed, tmp_path):
    written = analysed.plot(tmp_path)
    assert tmp_path / "sensitivity.png" in written
    page = analysed.to_html(tmp_path / "report.html", plot_dir=tmp_path).read_text()
    assert "Where the error comes from" in page and 'alt="sensitivity"' in page
    assert page.index("Where the error comes from") > page.index("<h2>Plots</h2>")
    assert analysed.sensitivity["rows"][0]["name"] in page
    with_analysis = page.count("data:image/png;base64,")
    saved, analysed.sensitivity = analysed.sensitivity, None
    try:
        plain = analysed.to_html(tmp_path / "plain.html").read_text()
    finally:
        analysed.sensitivity = saved
    assert "Where the error comes from" not in plain
    assert with_analysis == plain.count("data:image/png;base64,") + 1


def test_without_the_flag_nothing_is_added(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    report = compare(model, ["w8"], data=(torch.rand(16, 4), torch.randint(0, 3, (16,))), reps=1, warmup=0,
                     memory=False, layer_errors=False)
    assert report.sensitivity is None and "sensitivity" not in report.to_dict()
    assert not any(p.name == "sensitivity.png" for p in report.plot(tmp_path))
