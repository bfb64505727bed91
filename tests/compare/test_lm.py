"""The language-model task of compare: a tiny Llama (built offline, random weights) on a
token stream is measured by perplexity, generation speed and size, and recommended by a
perplexity-increase budget."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_llama

from quantlens.compare import Budget, Comparison, Measure, Row, compare
from quantlens.compare.lm import calibration_windows, is_causal_lm, token_stream
from quantlens.errors import InputError
from quantlens.report import Report
from quantlens.report.csv_table import LM_CSV_FIELDS
from quantlens.report.plots import LM_PLOT_FILES, write_plots
from quantlens.report.tables import LM_HEADERS, table

transformers = pytest.importorskip("transformers")

VOCAB, TOKENS, WINDOW = 128, 256, 64


def _tiny_llama() -> torch.nn.Module:
    # initializer_range: logits far enough from uniform for 4 bits to cost perplexity
    return tiny_llama(vocab_size=VOCAB, max_position_embeddings=256, initializer_range=0.1)


def _stream() -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, 300), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def llama():
    return _tiny_llama()


@pytest.fixture(scope="module")
def comparison(llama) -> Comparison:
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        return compare(
            llama,
            ["w8", "w4"],
            data={"input_ids": _stream()},
            ppl_window=WINDOW,
            ppl_tokens=TOKENS,
            prompt_tokens=8,
            new_tokens=4,
            generation_reps=1,
            max_perplexity_increase=5,
            layer_errors=False,
        )


def test_each_row_has_perplexity_generation_speed_and_size(comparison):
    assert comparison.task == "causal-lm"
    assert [r.name for r in comparison.rows] == ["float", "w8", "w4"]
    assert all(r.ok for r in comparison.rows), [r.error for r in comparison.rows]
    base, w8, w4 = comparison.rows
    for row in comparison.rows:
        assert 1 < row.perplexity < 10 * VOCAB and math.isfinite(row.perplexity)
        assert row.perplexity_tokens == TOKENS - TOKENS // WINDOW  # disjoint windows
        assert row.decode_tokens_per_s > 0 and row.prefill_tokens_per_s > 0
        assert row.time_to_first_token_ms > 0 and row.batch_size == 1
        assert row.latency_ms is None and row.accuracy is None
    assert base.disk_bytes > w8.disk_bytes > w4.disk_bytes
    assert abs(comparison.perplexity_increase(w8)) < 0.5  # int8 per channel: near float
    assert comparison.perplexity_increase(w8) < comparison.perplexity_increase(w4)
    info = comparison.settings
    assert (info.ppl_window, info.ppl_stride, info.prompt_tokens, info.new_tokens) == (
        WINDOW,
        WINDOW,
        8,
        4,
    )


def test_the_recommendation_follows_the_perplexity_budget(comparison):
    w8, w4 = comparison.row("w8"), comparison.row("w4")
    rise8, rise4 = comparison.perplexity_increase(w8), comparison.perplexity_increase(w4)
    between = (rise8 + rise4) / 2
    assert comparison.best(Budget(max_perplexity_increase=rise4 + 1, objective="size")) is w4
    assert comparison.best(Budget(max_perplexity_increase=between, objective="size")) is w8
    if rise8 > 0:
        assert comparison.best(Budget(max_perplexity_increase=rise8 / 2)) is None
    # the accuracy budget plays no part for a causal LM
    assert comparison.best(Budget(0, "size", rise4 + 1)) is w4
    fastest = max((w8, w4), key=lambda r: r.decode_tokens_per_s)
    assert comparison.best(Budget(max_perplexity_increase=rise4 + 1)) is fastest


def test_the_sentence_names_the_perplexity_budget(comparison):
    rise8 = comparison.perplexity_increase(comparison.row("w8"))
    budget = max(rise8, 0.0) + 1e-3  # (w8 may score below float on this random model)
    report = Report(comparison, objective="size", max_perplexity_increase=budget)
    text = report.recommendation()
    assert "perplexity budget" in text and "accuracy" not in text
    assert ("Use w8" in text) == (report.recommended is not None)
    tight = Report(comparison, max_perplexity_increase=0)
    if rise8 > 0:
        assert tight.recommendation().startswith("Keep the float model")


def test_the_tables_show_perplexity_and_tokens_per_second(comparison):
    headers, lines = table(comparison.rows, comparison.task)
    assert headers == LM_HEADERS
    assert lines[0][1] == f"{comparison.rows[0].perplexity:.2f}" and lines[0][6] == "1.00×"
    rise4 = comparison.perplexity_increase(comparison.row("w4"))
    assert lines[2][2] == f"{rise4:+.2f}"
    report = Report(comparison)
    assert "| ppl increase % |" in report.to_markdown()
    assert report.to_csv().splitlines()[0] == ",".join(LM_CSV_FIELDS)


def test_results_json_round_trips_with_the_lm_fields_and_budget(comparison):
    text = comparison.to_json()
    back = Comparison.from_json(text)
    assert back.to_json() == text
    assert back.budget.max_perplexity_increase == 5
    assert back.rows[2].decode_tokens_per_s == comparison.rows[2].decode_tokens_per_s
    old = {"name": "float", "method": "float", "accuracy": 90.0}  # a row of an older version
    assert "perplexity" not in Row.from_dict(old).to_dict()


def test_the_plots_show_perplexity_vs_size_and_decode_speed(comparison, tmp_path):
    written = {p.name for p in write_plots(comparison, tmp_path)}
    assert set(LM_PLOT_FILES) <= written
    assert "accuracy_vs_size.png" not in written


def test_the_task_is_detected_or_forced(llama):
    stream = {"input_ids": _stream()}
    assert is_causal_lm(llama, stream, Measure())
    assert not is_causal_lm(llama, stream, Measure(causal_lm=False))
    batches = [(torch.randn(4, 8), torch.zeros(4))]
    assert not is_causal_lm(torch.nn.Linear(8, 2), batches, Measure())
    with pytest.raises(InputError, match="token stream"):
        is_causal_lm(llama, batches, Measure(causal_lm=True))
    assert token_stream(torch.arange(10)).shape == (1, 10)


def test_a_long_calibration_stream_is_cut_into_windows():
    windows = calibration_windows({"input_ids": torch.arange(1000).reshape(1, -1)}, 128)
    assert len(windows) == 7 and windows[1]["input_ids"].shape == (1, 128)
    assert int(windows[1]["input_ids"][0, 0]) == 128
    short = [{"input_ids": torch.zeros(2, 16, dtype=torch.long)}]
    assert calibration_windows(short, 128) is short


def test_the_language_model_presets():
    from quantlens.compare.presets import make_config

    made = {n: make_config(n) for n in ("w4-gptq", "w4-awq", "w4-hqq", "w3-gptq")}
    assert {n: (c.bits, c.group_size, c.algorithm) for n, c in made.items()} == {
        "w4-gptq": (4, 128, "gptq"),
        "w4-awq": (4, 128, "awq"),
        "w4-hqq": (4, 128, "hqq"),
        "w3-gptq": (3, 128, "gptq"),
    }
