"""ql.compare on the zoo LSTM: Dynamic, which would only make it slower, is a failed row that
says so and is never the recommendation."""

from __future__ import annotations

import quantlens as ql
from quantlens import zoo


def test_dynamic_on_a_small_lstm_is_a_failed_row_that_says_keep_float():
    test = zoo.load_dataset("digits-seq", "test")
    report = ql.compare(
        zoo.load_model("digits-lstm"),
        ["dynamic"],
        data=(test.inputs[:64], test.labels[:64]),
        memory=False,
        reps=3,
        warmup=1,
    )
    float_row, dynamic = report.rows
    assert float_row.ok and not dynamic.ok
    assert dynamic.error.startswith(
        "Dynamic left every layer float because int8 would be slower than float32"
    )
    assert "rnn: hidden size 64 < 384; fc: 10 output features < 64" in dynamic.error
    assert "keep the float model for speed" in dynamic.error
    assert report.recommended is None
