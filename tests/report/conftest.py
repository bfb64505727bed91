"""A synthetic comparison (known numbers, no model run) shared by the report tests."""

from __future__ import annotations

import pytest

from quantlens.compare.results import Comparison, Row
from quantlens.report import Report


def make_rows() -> list[Row]:
    def row(name, method, acc, disk, lat, p95, **kw):
        return Row(
            name,
            method,
            disk_bytes=disk,
            memory_bytes=int(disk * 0.9),
            latency_ms=lat,
            latency_p95_ms=p95,
            items_per_s=64 / lat * 1e3,
            batch_size=64,
            threads=1,
            accuracy=acc,
            agreement=100.0 if method == "float" else 98.0,
            sqnr_db=float("inf") if method == "float" else 25.0,
            cosine=1.0,
            peak_memory_bytes=2_000_000,
            **kw,
        )

    return [
        row("float", "float", 99.0, 4_000_000, 10.0, 12.0),
        row("dynamic", "dynamic", 98.8, 1_100_000, 6.0, 7.0, layers_quantized=3, layers_float=1),
        row("static", "static", 98.5, 1_000_000, 4.0, 5.5, layers_quantized=4, layers_float=0),
        row("w4", "weight_only", 96.0, 600_000, 9.0, 9.5),
        Row("qat", "qat", status="failed", error="QAT needs labels"),
    ]


@pytest.fixture
def synthetic_report() -> Report:
    env = {
        "torch": "2.x",
        "python": "3.11",
        "platform": "test",
        "threads": {"intra_op": 1, "inter_op": 1},
        "cpu": {
            "model": "Test CPU",
            "logical_cores": 2,
            "features": {"avx2": True},
            "torch_cpu_capability": "AVX2",
        },
        "engines": {"active": "x86", "works": {"x86": {"ok": True}}},
    }
    settings = {
        "reps": 5,
        "warmup": 1,
        "threads": 1,
        "batch_size": 64,
        "samples": 450,
        "task": "classification",
    }
    layers = {
        "static": [
            {
                "name": "conv1",
                "kind": "ConvReLU2d",
                "out_sqnr_db": 35.0,
                "own_sqnr_db": 35.0,
                "weight_sqnr_db": 40.0,
                "jump": False,
            },
            {
                "name": "fc",
                "kind": "Linear",
                "out_sqnr_db": 25.0,
                "own_sqnr_db": 25.4,
                "weight_sqnr_db": 38.0,
                "jump": True,
            },
        ]
    }
    comparison = Comparison(
        make_rows(), env, "quantlens compare digits-cnn --methods dynamic,static,w4,qat", settings
    )
    return Report(comparison, max_accuracy_drop=1.0, layer_errors=layers)
