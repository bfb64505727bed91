"""docs/llm.md is generated from benchmarks/results/llm.json and kept in step."""

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import llm_page


def test_committed_page_matches_the_committed_results():
    assert llm_page.main(["--check"]) == 0, "run python benchmarks/llm_page.py"


def _row(variant, ppl, **more):
    return {"variant": variant, "perplexity": ppl, **more}


def test_the_page_states_the_reference_and_checks_each_target(tmp_path):
    rows = [
        _row("float32", 40.0, decode_tok_s=10.0, weight_mb_per_token=500.0, decode_read_gb_s=5.0),
        _row("w8 g128", 40.1),
        _row("w4 g128 rtn", 50.0, decode_tok_s=25.0, decode_vs_float=2.5),
        _row("w4 g128 gptq", 44.0),
        _row("w4 g128 awq", 47.0),
        _row("w3 g128 gptq", 81.0),
        _row("w8a8 dynamic", 42.0),
        _row("w8a8 dynamic smoothquant", 41.0),
    ]
    path = tmp_path / "llm.json"
    path.write_text(json.dumps({"date": "2026-12-06", "read_bandwidth_gb_s": 10.0, "rows": rows}))
    page = llm_page.render(path)
    assert "float reference is the dequantized Q4_1 published weights" in page
    assert "| w8 g128 within 0.5% of float | +0.25% | met |" in page
    assert (
        "| w4 g128 gptq: recovers >= 50% of RTN's increase | 60% (44.00 vs RTN 50.00) | met |"
        in page
    )
    assert (
        "| w4 g128 awq: recovers >= 50% of RTN's increase | 30% (47.00 vs RTN 50.00) | missed |"
        in page
    )
    assert "| w3 g128 gptq below 2x float | 2.02x | missed |" in page
    assert "| +2.50% (without: +5.00%) | met |" in page
    assert "| 2.5x float, torchao int4 not measured | met |" in page
    assert "Measured read bandwidth: 10 GB/s" in page
    assert "| float32 | 500 | 10 | 5 |" in page
