"""ql.compare end to end on the digits CNN (fast settings)."""

import pytest
import torch
from helpers import torch_threads

import quantlens as ql
from quantlens import Report, compare, zoo
from quantlens.errors import UnknownNameError


@pytest.fixture(scope="module")
def digits_report(digits_test_128, digits_calib) -> Report:
    model = zoo.load_model("digits-cnn")
    with torch_threads(1):
        return compare(
            model,
            {
                "static": ql.Static(observer="minmax", calib_batches=1),
                "broken": ql.QAT(skip=("zzz",)),
            },
            data=digits_test_128,
            calib_data=digits_calib.inputs[:64],
            reps=2,
            warmup=0,
            memory=False,
        )


def test_compare_measures_float_and_each_method(digits_report):
    names = [r.name for r in digits_report.rows]
    assert names == ["float", "static", "broken"]
    static = digits_report.row("static")
    assert (
        static.ok and static.accuracy > 90 and static.disk_bytes < digits_report.baseline.disk_bytes
    )
    assert digits_report.row("broken").status == "failed"
    assert digits_report.recommended is not None and digits_report.recommended.name == "static"


def test_per_layer_error_of_the_quantized_model_is_recorded(digits_report, tmp_path):
    layers = digits_report.layer_errors["static"]
    assert len(layers) >= 5 and all("out_sqnr_db" in x for x in layers)
    assert any(x["jump"] for x in layers)
    assert (tmp_path / "layer_error.png") in digits_report.plot(tmp_path)


def test_method_names_are_checked_before_anything_runs():
    with pytest.raises(UnknownNameError, match="valid methods"):
        compare(torch.nn.Linear(2, 2), ["static", "int3"], data=torch.rand(4, 2))
