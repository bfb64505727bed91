"""``ql.compare(..., analysis=True)``: the sensitivity, the layer-by-layer error and (Static)
the activation ranges of the recommended method join the JSON, the plots and the HTML report
(digits-cnn, a small subset, tiny latency settings); ``quantlens compare --analysis`` writes
them."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import generator, torch_threads

import quantlens as ql
from quantlens import Report, compare, zoo
from quantlens.cli import main
from quantlens.report.analysis_plots import ANALYSIS_PLOT_FILES

LAYERS = ["stem.0", "block1.conv1", "block1.conv2", "down.0", "block2.conv1", "block2.conv2", "fc"]


@pytest.fixture(scope="module")
def analysed(digits_test_128, digits_calib) -> Report:
    with torch_threads(1):
        model = zoo.load_model("digits-cnn")
        return compare(
            model,
            {"static": ql.Static(observer="minmax", calib_batches=1)},
            data=digits_test_128,
            calib_data=digits_calib.inputs[:128],
            reps=2,
            warmup=0,
            memory=False,
            analysis=True,
            analysis_batches=2,
        )


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_json_has_the_layer_by_layer_error_and_the_activation_ranges(analysed, tmp_path):
    sens = json.loads(analysed.to_json(tmp_path / "results.json"))["sensitivity"]
    layers = sens["layers"]  # compare_layers of the very model the static row measured
    assert [x["name"] for x in layers["layers"]] == LAYERS
    assert layers["jump"] in LAYERS and all(
        x["isolated"] and x["own_sqnr_db"] > 20 for x in layers["layers"]
    )
    ranges = sens[
        "ranges"
    ]  # the float model's inputs of every Conv/Linear on two calibration batches
    assert [x["name"] for x in ranges["layers"]] == LAYERS and ranges["samples"] == 128
    assert {r["observer"] for r in ranges["layers"][0]["ranges"]} == {"minmax", "percentile", "mse"}
    back = Report.from_json(
        tmp_path / "results.json"
    )  # infinite SQNRs and float percentile keys come back
    written = back.plot_analysis(tmp_path / "again")
    assert sorted(p.name for p in written) == [
        "activation_ranges.png",
        "layer_sqnr.png",
        "sensitivity.png",
    ]


@pytest.mark.slow
def test_the_html_embeds_the_analysis_plots(analysed, tmp_path):
    written = analysed.plot(tmp_path)
    for name in ("sensitivity.png", "layer_sqnr.png", "activation_ranges.png"):
        assert tmp_path / name in written
    page = analysed.to_html(tmp_path / "report.html", plot_dir=tmp_path).read_text()
    assert "Where the error comes from" in page
    for alt in ("sensitivity", "layer_sqnr", "activation_ranges"):
        assert f'alt="{alt}"' in page
    assert page.index("Where the error comes from") > page.index("<h2>Plots</h2>")
    assert analysed.sensitivity["rows"][0]["name"] in page
    assert f"the error jumps at <b>{analysed.sensitivity['layers']['jump']}</b>" in page
    with_analysis = page.count("data:image/png;base64,")
    saved, analysed.sensitivity = analysed.sensitivity, None
    try:
        plain = analysed.to_html(tmp_path / "plain.html").read_text()
    finally:
        analysed.sensitivity = saved
    assert "Where the error comes from" not in plain
    assert with_analysis == plain.count("data:image/png;base64,") + 3


def test_weight_only_analysis_has_no_activation_ranges():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3)
    ).eval()
    x = torch.randn(128, 64, generator=generator(0))
    report = compare(
        model,
        ["w4"],
        data=(x, model(x).argmax(-1)),
        reps=1,
        warmup=0,
        memory=False,
        layer_errors=False,
        analysis=True,
        analysis_batches=2,
    )
    assert [x["name"] for x in report.sensitivity["layers"]["layers"]] == ["0", "2"]
    assert "ranges" not in report.sensitivity  # weight-only quantizes no activation


def test_each_row_is_compared_layer_by_layer_once_for_the_analysis_and_the_layer_plot(monkeypatch):
    from quantlens.analysis import compare_layers
    from quantlens.compare import analysis as compare_analysis
    from quantlens.compare import layer_errors as layers

    calls = []

    def counted(*args, **kwargs):
        calls.append(args[1])
        return compare_layers(*args, **kwargs)

    monkeypatch.setattr(compare_analysis, "compare_layers", counted)
    monkeypatch.setattr(layers, "compare_layers", counted)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3)
    ).eval()
    x = torch.randn(128, 64, generator=generator(0))
    report = compare(
        model,
        ["w4"],
        data=(x, model(x).argmax(-1)),
        reps=1,
        warmup=0,
        memory=False,
        analysis=True,
        analysis_batches=2,
    )
    assert len(calls) == 1  # the w4 row's model, compared once
    assert [e["name"] for e in report.layer_errors["w4"]] == ["0", "2"]
    assert report.layer_errors["w4"] == layers.error_rows(
        compare_analysis.layer_result(report.sensitivity)
    )


def test_without_the_flag_nothing_is_added(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    report = compare(
        model,
        ["w8"],
        data=(torch.rand(16, 4), torch.randint(0, 3, (16,))),
        reps=1,
        warmup=0,
        memory=False,
        layer_errors=False,
    )
    assert report.sensitivity is None and "sensitivity" not in report.to_dict()
    assert not any(p.name in ANALYSIS_PLOT_FILES.values() for p in report.plot(tmp_path))


@pytest.mark.slow
def test_the_cli_analysis_flag_writes_the_layer_and_range_plots(digits_test, tmp_path, capsys):
    data = tmp_path / "digits.pt"
    torch.save((digits_test.inputs[:96], digits_test.labels[:96]), data)
    out = tmp_path / "report"
    code = main(
        [
            "compare",
            "digits-cnn",
            "--data",
            str(data),
            "--calib-data",
            str(data),
            "--methods",
            "static",
            "--reps",
            "1",
            "--no-memory",
            "--analysis",
            "--out",
            str(out),
        ]
    )
    capsys.readouterr()
    assert code == 0
    for name in ("sensitivity.png", "layer_sqnr.png", "activation_ranges.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert 'alt="layer_sqnr"' in page and 'alt="activation_ranges"' in page
    results = json.loads((out / "results.json").read_text())
    assert results["sensitivity"]["layers"]["jump"] in LAYERS
