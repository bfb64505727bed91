"""Perplexity with sliding windows and generation speed, on a tiny random Llama."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_llama

import quantlens as ql
from quantlens.errors import InputError
from quantlens.eval.generation import measure_generation
from quantlens.eval.perplexity import measure_perplexity

transformers = pytest.importorskip("transformers")

VOCAB = 96


@pytest.fixture(scope="module")
def llama():
    return tiny_llama(vocab_size=VOCAB, max_position_embeddings=256, tie_word_embeddings=True)


def _stream(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))


def test_one_window_is_the_cross_entropy_of_the_whole_stream(llama):
    ids = _stream(40)
    with torch.no_grad():
        logits = llama(ids).logits[0]
    expected = F.cross_entropy(logits[:-1], ids[0, 1:]).item()
    r = measure_perplexity(llama, ids, window=64)
    assert r.tokens == 39 and r.window == 64 and r.stride == 64
    assert r.nll == pytest.approx(expected, rel=1e-5)
    assert r.perplexity == pytest.approx(math.exp(expected), rel=1e-5)


def test_windows_score_every_token_once_and_overlap_adds_context(llama):
    ids = _stream(100, seed=1)
    disjoint = measure_perplexity(llama, ids[0], window=32)
    overlap = measure_perplexity(llama, ids, window=32, stride=16)
    assert (disjoint.tokens, overlap.tokens) == (99 - 3, 99)  # 4 windows: 31 + 31 + 31 + 3
    # disjoint windows: exactly the per-window cross entropies, tokens weighted
    total = 0.0
    with torch.no_grad():
        for b in range(0, 100, 32):
            chunk = ids[:, b : b + 32]
            logits = llama(chunk).logits[0]
            total += F.cross_entropy(logits[:-1], chunk[0, 1:], reduction="sum").item()
    assert disjoint.nll == pytest.approx(total / 96, rel=1e-5)
    assert overlap.nll != pytest.approx(disjoint.nll, rel=1e-6)


def test_a_random_model_is_near_uniform_and_w8_stays_close(llama):
    ids = _stream(128, seed=2)
    ref = measure_perplexity(llama, ids, window=64)
    assert VOCAB * 0.8 < ref.perplexity < VOCAB * 1.25  # untrained: about the vocabulary size
    qm = ql.quantize(llama, ql.WeightOnly(bits=8))
    assert measure_perplexity(qm, ids, window=64).perplexity == pytest.approx(
        ref.perplexity, rel=2e-3
    )


@pytest.mark.parametrize(
    "ids, kwargs",
    [
        (torch.zeros(1, 1, dtype=torch.long), {}),
        (torch.zeros(2, 8, dtype=torch.long), {}),
        (torch.zeros(1, 8, dtype=torch.long), {"window": 1}),
        (torch.zeros(1, 8, dtype=torch.long), {"window": 4, "stride": 5}),
    ],
)
def test_bad_streams_and_windows_are_refused(llama, ids, kwargs):
    with pytest.raises(InputError):
        measure_perplexity(llama, ids, **kwargs)


def test_generation_times_prefill_and_decode_and_matches_generate(llama):
    ids = _stream(24, seed=3)
    r = measure_generation(llama, ids, new_tokens=6, reps=2, warmup=1, threads=1)
    expected = llama.generate(ids, max_new_tokens=7, do_sample=False, attention_mask=None)
    assert r.tokens == tuple(expected[0, 24:].tolist())
    assert (r.prompt_tokens, r.new_tokens, r.reps, r.threads) == (24, 6, 2, 1)
    assert r.prefill_tokens_per_s > 0 and r.decode_tokens_per_s > 0
    assert r.decode_tokens_per_s >= r.decode_tokens_per_s_p95
    assert r.time_to_first_token_s <= r.time_to_first_token_s_p95
    assert r.peak_memory_bytes >= 0
    qm = ql.quantize(llama, ql.WeightOnly(bits=4, group_size=32))
    q = measure_generation(qm, ids[0], new_tokens=6, reps=1, warmup=0)
    assert len(q.tokens) == 7
    with pytest.raises(InputError):
        measure_generation(llama, ids.repeat(2, 1))
