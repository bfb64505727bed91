"""No silent wrong answer from measuring: NaN/Inf or empty data, non-finite outputs and
out-of-range numbers are errors, not a 100 % agreement or a recommendation."""

import math

import pytest
import torch
from torch import nn

import quantlens as ql
from quantlens.compare.run import run_comparison
from quantlens.errors import InputError, QuantizationFailedError
from quantlens.eval.quality import Outputs, measure_quality
from quantlens.report import Report
from quantlens.testing import assert_quantized_close

NAN_DATA = (torch.full((8, 1, 8, 8), float("nan")), torch.zeros(8, dtype=torch.long))
EMPTY_DATA = (torch.empty(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize(
    "data, words",
    [
        (NAN_DATA, r"data holds 512 NaN/Inf value\(s\); the first is nan"),
        (EMPTY_DATA, "data has no samples"),
    ],
    ids=["nan", "empty"],
)
def test_compare_refuses_nan_and_empty_data(digits_model, data, words):
    with pytest.raises(InputError, match=words):
        ql.compare(digits_model, ["w8"], data=data, memory=False)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"calib_data": NAN_DATA}, "calib_data holds 512 NaN/Inf"),
        ({"train_data": EMPTY_DATA}, "train_data has no samples"),
        ({"calib_data": 5}, r"a int \(calib_data\)"),
    ],
)
def test_compare_checks_calib_and_train_data_before_any_row(
    digits_model, digits_test_128, kwargs, words
):
    with pytest.raises(InputError, match=words):  # not a failed row after the others were measured
        run_comparison(
            digits_model,
            {"w8": ql.WeightOnly(bits=8)},
            data=digits_test_128,
            memory=False,
            **kwargs,
        )


def test_sensitivity_refuses_nan_data(digits_model):
    with pytest.raises(InputError, match="NaN/Inf"):
        ql.analysis.sensitivity(digits_model, NAN_DATA, ql.Dynamic())


@pytest.mark.parametrize(
    "inputs, words",
    [(NAN_DATA[0], "inputs holds 512 NaN/Inf"), (EMPTY_DATA[0], "inputs has no samples")],
    ids=["nan", "empty"],
)
def test_testing_helper_refuses_nan_and_empty_inputs(digits_model, inputs, words):
    with pytest.raises(InputError, match=words):
        assert_quantized_close(digits_model, digits_model, inputs, min_cosine=0.99)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_cosine": math.nan},
        {"min_cosine": 2.0},
        {"min_agreement": 101},
        {"atol": -1.0},
        {"min_sqnr_db": math.inf},
    ],
)
def test_testing_helper_range_checks_tolerances(digits_model, digits_test_128, kwargs):
    with pytest.raises(InputError, match=f"{next(iter(kwargs))} must be a finite number"):
        assert_quantized_close(digits_model, digits_model, digits_test_128[0][:4], **kwargs)


def test_non_finite_outputs_are_errors():
    finite = Outputs(torch.randn(4, 3), None, "logits", [])
    broken = Outputs(torch.tensor([[0.0, math.nan, 1.0]] * 4), None, "logits", [])
    with pytest.raises(
        QuantizationFailedError,
        match=r"quantized model's output holds 4 NaN/Inf .*breaks the model",
    ):
        measure_quality(finite, broken)
    with pytest.raises(InputError, match="float model's output holds 4 NaN/Inf"):
        measure_quality(broken, finite)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"reps": 0}, "reps must be an integer >= 1"),
        ({"threads": -2}, "threads"),
        ({"qat_epochs": -1}, "qat_epochs"),
        ({"warmup": 1.5}, "warmup"),
    ],
)
def test_run_comparison_range_checks(digits_model, digits_test_128, kwargs, words):
    with pytest.raises(InputError, match=words):
        run_comparison(digits_model, {}, data=digits_test_128, memory=False, **kwargs)


def test_report_refuses_a_nan_budget(digits_model, digits_test_128):
    comparison = run_comparison(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
        {},
        data=digits_test_128,
        memory=False,
        reps=1,
        warmup=0,
    )
    with pytest.raises(
        InputError, match="max_accuracy_drop must be a finite number from 0 to 100, got nan"
    ):
        Report(comparison, max_accuracy_drop=math.nan)
    with pytest.raises(InputError, match="max_accuracy_drop"):
        Report(comparison).best(max_accuracy_drop=-1)
