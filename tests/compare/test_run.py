import signal

import pytest
import torch
from helpers import interrupter

import quantlens as ql
from quantlens.compare import Comparison, run_comparison
from quantlens.compare import run as compare_mod
from quantlens.errors import InputError

FAST_STATIC = ql.Static(observer="minmax", calib_batches=1)


def test_float_row_first_and_a_failing_method_does_not_stop_the_rest(digits_model, digits_test_128):
    rows_seen = []
    comparison = run_comparison(
        digits_model,
        {"broken": ql.Static(skip=("no_such_layer",)), "static": FAST_STATIC},
        data=digits_test_128,
        calib_data=digits_test_128[0][:64],
        reps=2,
        warmup=0,
        memory=False,
        on_row=lambda row, c: rows_seen.append(row.name),
    )
    assert rows_seen == ["float", "broken", "static"]
    float_row, broken, static = comparison.rows
    assert float_row.method == "float" and float_row.accuracy > 95 and float_row.agreement == 100.0
    assert (
        broken.status == "failed" and "no_such_layer" in broken.error and broken.latency_ms is None
    )
    assert static.ok and static.method == "static"
    assert static.disk_bytes < float_row.disk_bytes
    assert abs(static.accuracy - float_row.accuracy) < 3 and static.sqnr_db > 15
    assert static.latency_ms > 0 and static.threads >= 1 and static.layers_quantized > 0
    assert comparison.settings["task"] == "classification"
    again = Comparison.from_dict(comparison.to_dict())
    assert [r.name for r in again.rows] == ["float", "broken", "static"]


def test_ctrl_c_keeps_the_rows_measured_so_far(digits_model, digits_test_128, monkeypatch):
    monkeypatch.setattr(compare_mod, "quantize_one", interrupter())
    comparison = run_comparison(
        digits_model, {"static": FAST_STATIC}, data=digits_test_128, reps=1, warmup=0, memory=False
    )
    assert comparison.interrupted and [r.name for r in comparison.rows] == ["float"]


def test_data_that_does_not_fit_names_both_shapes(digits_model):
    with pytest.raises(InputError) as info:
        run_comparison(digits_model, {}, data=torch.rand(4, 3, 16, 16), memory=False)
    message = str(info.value)
    assert "(4, 3, 16, 16)" in message and "(N, 1, H, W)" in message


@pytest.mark.slow
def test_memory_is_measured_for_float_and_quantized(digits_model, digits_test_128):
    comparison = run_comparison(
        digits_model,
        {"static": FAST_STATIC},
        data=digits_test_128,
        calib_data=digits_test_128[0][:64],
        reps=1,
        warmup=0,
        memory=True,
    )
    for row in comparison.rows:
        assert row.peak_memory_bytes is not None, row.notes
        assert row.model_memory_bytes is not None


def test_qat_trains_when_train_data_is_given(digits_model, digits_test_128):
    train = (digits_test_128[0][:64], digits_test_128[1][:64])
    comparison = run_comparison(
        digits_model,
        {"qat": ql.QAT()},
        data=digits_test_128,
        train_data=train,
        calib_data=digits_test_128[0][:64],
        reps=1,
        warmup=0,
        memory=False,
    )
    qat = comparison.rows[1]
    assert qat.ok, qat.error
    assert any("QAT: 1 epoch" in n for n in qat.notes)


@pytest.mark.parametrize("via", ["cause", "context"])
def test_a_ctrl_c_wrapped_in_another_error_stops_the_run(
    digits_model, digits_test_128, monkeypatch, via
):
    started = []
    monkeypatch.setattr(compare_mod, "quantize_one", interrupter(via))
    comparison = run_comparison(
        digits_model,
        {"qat": ql.QAT(), "static": FAST_STATIC},
        data=digits_test_128,
        reps=1,
        warmup=0,
        memory=False,
        on_start=lambda n, i, t: started.append(n),
    )
    assert comparison.interrupted and [r.name for r in comparison.rows] == ["float"]
    assert started == ["float", "qat"]  # static never started


def test_a_ctrl_c_a_dependency_swallows_still_stops_the_run(
    digits_model, digits_test_128, monkeypatch
):
    def swallowing_import(*args, **kwargs):  # a bare `except:` in a lazily imported dependency
        try:
            signal.raise_signal(signal.SIGINT)
        except BaseException:  # noqa: BLE001, S110 - what the dependency does
            pass
        raise AttributeError(
            "module 'sympy' has no attribute 'core'"
        )  # the half-imported module, later

    monkeypatch.setattr(compare_mod, "quantize_one", swallowing_import)
    previous = signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # as in a plain `python` process
    try:
        comparison = run_comparison(
            digits_model,
            {"qat": ql.QAT(), "static": FAST_STATIC},
            data=digits_test_128,
            reps=1,
            warmup=0,
            memory=False,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert comparison.interrupted and [r.name for r in comparison.rows] == ["float"]
