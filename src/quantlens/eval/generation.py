"""Generation speed of a causal language model at batch 1: prefill, decode, first token.

One generation is timed in two phases, as an LLM server sees them:

- *prefill*: one forward pass over the prompt, filling the KV cache; ``prefill tokens/s`` is
  prompt tokens over its time, and the *time to first token* is that pass plus picking the
  token (greedy);
- *decode*: ``new_tokens`` steps of one token each, reading the cache; ``decode tokens/s`` is
  steps over their time. At batch 1 decode reads every weight once per token, so it is the
  figure weight-only quantization speeds up.

The loop is the greedy one ``model.generate`` runs (cache passed back each step), written
out so the two phases are timed apart. Peak memory is the peak resident set size (Linux
``VmHWM``, reset before each timed generation) minus the resident size before it: the
activations and the KV cache of one generation, not the weights.
"""

from __future__ import annotations

import inspect
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from quantlens.errors import InputError, check_number
from quantlens.eval.latency import num_threads, percentile
from quantlens.eval.memory import _peak_bytes, _reset_peak, _rss_bytes


@dataclass(frozen=True)
class GenerationResult:
    """What :func:`measure_generation` measured (medians over ``reps``, and p95).

    Attributes:
        prompt_tokens: tokens in the prompt (prefill length).
        new_tokens: decode steps per generation.
        prefill_tokens_per_s, prefill_tokens_per_s_p95: prompt tokens over the time to first
            token (the p95 figure is from the p95 time: the slow end).
        decode_tokens_per_s, decode_tokens_per_s_p95: decode steps over their time.
        time_to_first_token_s, time_to_first_token_s_p95: prefill plus the first token.
        peak_memory_bytes: the largest rise of resident memory during one generation (0 where
            the peak counter cannot be reset: not Linux).
        reps, warmup, threads: how it was timed.
        tokens: the greedy tokens of the last generation (``new_tokens + 1``: the first one
            comes from the prefill), the same ``model.generate(do_sample=False)`` gives.
    """

    prompt_tokens: int
    new_tokens: int
    prefill_tokens_per_s: float
    prefill_tokens_per_s_p95: float
    decode_tokens_per_s: float
    decode_tokens_per_s_p95: float
    time_to_first_token_s: float
    time_to_first_token_s_p95: float
    peak_memory_bytes: int
    reps: int
    warmup: int
    threads: int
    tokens: tuple[int, ...] = ()


def _generate_once(
    model: nn.Module, ids: torch.Tensor, new_tokens: int
) -> tuple[float, float, list[torch.Tensor]]:
    """Greedy generation with the KV cache: (time to first token, decode time) in seconds
    and the ``new_tokens + 1`` tokens generated, each ``(1, 1)``."""
    # transformers 5 names the KV cache ``cache``; earlier releases ``past_key_values``
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    start = time.perf_counter()
    out = model(ids, use_cache=True)  # prefill: (1, T) -> logits (1, T, V) and the cache
    tokens = [out.logits[:, -1:].argmax(-1)]  # (1, 1)
    first = time.perf_counter()
    for _ in range(new_tokens):
        cache = getattr(out, key)
        out = model(tokens[-1], use_cache=True, **{key: cache})  # (1, 1) -> (1, 1, V)
        tokens.append(out.logits[:, -1:].argmax(-1))
    return first - start, time.perf_counter() - first, tokens


@torch.no_grad()  # not inference_mode: some quantized tensor subclasses fail under it
def measure_generation(
    model: nn.Module,
    input_ids: torch.Tensor,
    *,
    new_tokens: int = 32,
    reps: int = 5,
    warmup: int = 1,
    threads: int | None = None,
) -> GenerationResult:
    """Time greedy generation of ``new_tokens`` after the prompt ``input_ids`` at batch 1.

    Args:
        model: a Hugging Face-style causal LM (``model(ids, cache=..., use_cache=True)``
            returns ``.logits`` and ``.cache``; ``past_key_values`` before transformers 5),
            float or quantized.
        input_ids: the prompt, ``(T,)`` or ``(1, T)`` int64.
        new_tokens: decode steps per generation, at least 1.
        reps: timed generations (median and p95 over them), at least 1.
        warmup: untimed generations first.
        threads: intra-op threads (None: the current setting).

    Returns:
        A :class:`GenerationResult`.

    Example:
        >>> r = measure_generation(model, ids[:, :128], new_tokens=32, reps=5, threads=2)
        >>> r.decode_tokens_per_s, r.time_to_first_token_s
    """
    ids = input_ids.reshape(1, -1) if input_ids.ndim == 1 else input_ids
    if ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] < 1:
        raise InputError(
            "generation is timed at batch 1: input_ids must be (T,) or (1, T), "
            f"got {tuple(input_ids.shape)}"
        )
    new_tokens = check_number("new_tokens", new_tokens, 1, integer=True)
    reps = check_number("reps", reps, 1, integer=True)
    warmup = check_number("warmup", warmup, 0, integer=True)
    was_training = model.training
    model.eval()
    firsts: list[Any] = []
    decodes: list[Any] = []
    peak = 0
    tokens: list[Any] = []
    try:
        with num_threads(threads):
            used_threads = torch.get_num_threads()
            for _ in range(warmup):
                _generate_once(model, ids, new_tokens)
            for _ in range(reps):
                before, resettable = _rss_bytes(), _reset_peak()
                first, decode, tokens = _generate_once(model, ids, new_tokens)
                if resettable:
                    peak = max(peak, _peak_bytes()[0] - before)
                firsts.append(first)
                decodes.append(decode)
    finally:
        model.train(was_training)
    prompt = ids.shape[1]
    ttft, ttft95 = statistics.median(firsts), percentile(firsts, 95)
    dec, dec95 = statistics.median(decodes), percentile(decodes, 95)
    return GenerationResult(
        prompt_tokens=prompt,
        new_tokens=new_tokens,
        prefill_tokens_per_s=prompt / ttft,
        prefill_tokens_per_s_p95=prompt / ttft95,
        decode_tokens_per_s=new_tokens / dec,
        decode_tokens_per_s_p95=new_tokens / dec95,
        time_to_first_token_s=ttft,
        time_to_first_token_s_p95=ttft95,
        peak_memory_bytes=max(peak, 0),
        reps=reps,
        warmup=warmup,
        threads=used_threads,
        tokens=tuple(int(t) for t in tokens),
    )
