"""The p50 / p95 summary the int8 benchmarks write beside their rows."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _side_by_side import side_by_side, side_by_side_table

VARIANTS = ("fp32", "ql-static", "ort-u8s8-pc")


def _row(variant, load, median, p95, batch=1):
    return {
        "model": "m",
        "batch": batch,
        "load": load,
        "variant": variant,
        "median_ms": median,
        "p95_ms": p95,
    }


def test_one_case_per_model_batch_and_load_with_ratios_to_ours():
    rows = [
        _row("fp32", "idle", 20.0, 22.0),
        _row("ql-static", "idle", 5.0, 6.0),
        _row("ort-u8s8-pc", "idle", 4.0, 9.0),
        _row("ql-qat", "idle", 1.0, 1.0),  # not one of the variants: left out
        _row("fp32", "busy-core", 30.0, 40.0),
        _row("ql-static", "busy-core", 10.0, 12.0),
        {"model": "m", "variant": "ql-quantize-time", "seconds": 2.0},  # not a timing row
    ]
    idle, busy = side_by_side(rows, VARIANTS, "ql-static")
    assert idle["ql-static"] == {"p50_ms": 5.0, "p95_ms": 6.0} and "ql-qat" not in idle
    assert idle["ql_static_vs_fp32"] == 4.0 and idle["ql_static_vs_ort_u8s8_pc"] == 0.8
    assert busy["load"] == "busy-core" and busy["ql_static_vs_fp32"] == 3.0
    assert "ort-u8s8-pc" not in busy and "ql_static_vs_ort_u8s8_pc" not in busy
    table = side_by_side_table([idle, busy], VARIANTS, "ql-static").splitlines()
    assert len(table) == 3 and "5.00 /   6.00" in table[1] and "0.80x" in table[1]
    assert table[2].split()[:3] == ["m", "busy-core", "1"] and table[2].count("-") >= 2
