"""ql.compare on the zoo LSTM: Dynamic, which would only make it slower, keeps it float; its row
measures the float model, says why, and is never the recommendation."""

from __future__ import annotations

import quantlens as ql
from quantlens import zoo
from quantlens.report.terminal import declined


def test_dynamic_on_a_small_lstm_is_the_float_model_and_not_recommended():
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
    assert float_row.ok and dynamic.ok and dynamic.layers_quantized == 0
    (note,) = [n for n in dynamic.notes if "int8 would be slower" in n]
    assert note.startswith("Dynamic quantized nothing: int8 would be slower than float32")
    assert "rnn: hidden size 64 < 384; fc: 10 output features < 64" in note
    assert note.endswith("; this row measures the float model")
    assert dynamic.accuracy == float_row.accuracy and dynamic.disk_bytes == float_row.disk_bytes
    assert report.recommended is None
    assert declined(report.rows) == [f"dynamic: {note}"]  # printed by quantlens compare
    assert report.recommendation() == (
        "Keep the float model: dynamic left every layer float, since int8 would be slower "
        "than float there (see the row's notes)."
    )
