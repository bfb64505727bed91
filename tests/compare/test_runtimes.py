"""compare(..., runtimes=("torch", "onnxruntime")): each model exported to ONNX and measured
in ONNX Runtime beside its PyTorch row."""

from __future__ import annotations

import sys

import pytest

import quantlens as ql
from quantlens.compare import Comparison, Measure, run_comparison
from quantlens.compare.presets import make_config
from quantlens.compare.results import Row, runtime_row_name
from quantlens.compare.settings import check_runtimes
from quantlens.errors import InputError, MissingDependencyError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

FAST = {"reps": 2, "warmup": 1, "memory": False, "layer_errors": False, "threads": 1}


@pytest.fixture(scope="module")
def deployed(digits_model, digits_test, digits_calib):
    """float, dynamic, static and w8 on digits-cnn over torch and onnxruntime (450 images)."""
    return ql.compare(
        digits_model,
        {
            "dynamic": ql.Dynamic(),
            "static": ql.Static(observer="minmax", calib_batches=1),
            "w8": make_config("w8", digits_model),  # its Conv2d layers too
        },
        data=(digits_test.inputs, digits_test.labels),
        calib_data=digits_calib.inputs,
        runtimes=("torch", "onnxruntime"),
        **FAST,
    )


@pytest.mark.slow
def test_each_model_has_an_onnxruntime_row_after_its_pytorch_row(deployed, tmp_path):
    rows = deployed.rows
    names = [r.name for r in rows]
    assert names == [
        "float",
        "float (onnxruntime)",
        "dynamic",
        "dynamic (onnxruntime)",
        "static",
        "static (onnxruntime)",
        "w8",
        "w8 (onnxruntime)",
    ]
    for torch_row, ort_row in zip(rows[::2], rows[1::2]):
        assert torch_row.runtime == "torch" and ort_row.runtime == "onnxruntime"
        assert ort_row.ok, ort_row.error
        assert ort_row.method == torch_row.method and ort_row.source_name == torch_row.name
        assert ort_row.disk_bytes > 10_000 and ort_row.latency_ms > 0
        assert ort_row.threads == torch_row.threads == 1 and ort_row.batch_size == 64
        # the same float reference: ONNX Runtime gives the same predictions here
        assert abs(ort_row.accuracy - torch_row.accuracy) <= 0.5
        assert ort_row.agreement >= 99.0 and ort_row.sqnr_db > 25
    by_name = {r.name: r for r in rows}
    float_ort, static_ort = by_name["float (onnxruntime)"], by_name["static (onnxruntime)"]
    assert static_ort.disk_bytes < 0.5 * float_ort.disk_bytes  # int8 weights in the file
    assert by_name["w8 (onnxruntime)"].disk_bytes < 0.5 * float_ort.disk_bytes
    assert deployed.baseline is rows[0]
    assert deployed.comparison.settings.runtimes == ["torch", "onnxruntime"]
    assert deployed.environment["onnxruntime"] == sys.modules["onnxruntime"].__version__


@pytest.mark.slow
def test_the_recommendation_weighs_every_row_and_names_its_runtime(deployed):
    best = deployed.recommended
    fastest = min(
        (r for r in deployed.rows if r.ok and r is not deployed.baseline),
        key=lambda r: r.latency_ms,
    )
    assert best is fastest  # every row within the budget here: the fastest of them all
    named = best.name if best.runtime != "torch" else f"{best.name} (torch)"
    assert deployed.recommendation().startswith(f"Use {named}:")


@pytest.mark.slow
def test_onnxruntime_rows_read_back_from_json_and_render(deployed, tmp_path):
    again = Comparison.from_json(deployed.to_json())
    assert [(r.name, r.runtime) for r in again.rows] == [(r.name, r.runtime) for r in deployed.rows]
    assert (
        again.row("static (onnxruntime)").disk_bytes
        == deployed.row("static (onnxruntime)").disk_bytes
    )
    deployed.to_html(tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count('<tr class="runtime">') + html.count('<tr class="best">') >= 4
    assert "<td>static (onnxruntime)</td>" in html and "in torch, onnxruntime" in html
    assert "<dt>onnxruntime</dt>" in html and "Stars and hatched bars" in html
    csv_lines = deployed.to_csv().splitlines()
    assert csv_lines[0].startswith("name,method,runtime,")
    assert csv_lines[2].startswith("float (onnxruntime),float,onnxruntime,ok,")


def test_a_model_that_cannot_be_exported_is_a_failed_row_with_the_reason(
    digits_model, digits_test_128
):
    nf4 = ql.WeightOnly(bits=4, group_size=32, codebook="nf4")
    comparison = run_comparison(
        digits_model,
        {"nf4": nf4},
        data=digits_test_128,
        measure=Measure(memory=False, layer_errors=False, runtimes=("torch", "onnxruntime")),
        reps=1,
        warmup=0,
    )
    row = comparison.row("nf4 (onnxruntime)")
    assert comparison.row("nf4").ok and comparison.row("float (onnxruntime)").ok
    assert row.status == "failed" and row.runtime == "onnxruntime"
    assert row.error.startswith("cannot export to ONNX:") and "nf4 codebook" in row.error
    assert "\n" not in row.error and row.latency_ms is None


def test_runtime_is_written_only_when_not_torch_and_old_rows_read_as_torch():
    old = Row("static", "static", disk_bytes=10).to_dict()
    assert "runtime" not in old and Row.from_dict(old).runtime == "torch"
    ort = Row(runtime_row_name("static", "onnxruntime"), "static", runtime="onnxruntime")
    assert ort.to_dict()["runtime"] == "onnxruntime"
    assert Row.from_dict(ort.to_dict()) == ort and ort.source_name == "static"


def test_runtimes_are_checked():
    assert Measure().runtimes == ("torch",)
    assert check_runtimes("onnxruntime, torch") == ("torch", "onnxruntime")
    with pytest.raises(InputError, match="unknown runtime 'tensorrt'"):
        Measure(runtimes=("torch", "tensorrt"))
    with pytest.raises(InputError, match="leave out torch"):
        check_runtimes(["onnxruntime"])


def test_missing_onnxruntime_names_the_extra(digits_model, digits_test_128, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'quantlens\[onnx\]'"):
        run_comparison(
            digits_model, {}, data=digits_test_128, memory=False, runtimes="torch,onnxruntime"
        )
