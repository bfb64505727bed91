"""The language-model task of a comparison: a causal LM measured on one token stream.

Each row gets the perplexity of the stream's first ``ppl_tokens`` tokens in windows of
``ppl_window`` (:mod:`quantlens.eval.perplexity`), the prefill and decode tokens/s and the
time to first token of a greedy generation at batch 1 after a prompt of the stream's first
``prompt_tokens`` tokens (:mod:`quantlens.eval.generation`), the rise of resident memory
during that generation, and the checkpoint size (:mod:`quantlens.eval.size`).

The task is detected (:func:`is_causal_lm`) or forced with ``Measure(causal_lm=True)``.

Example:
    >>> ys = lm_yardstick(stream, Measure(ppl_tokens=1024), Timing(threads=1), workdir)
    >>> measure_lm_row(Row("w4", "weight_only"), quantized, ys).perplexity
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quantlens.compare.results import Row
from quantlens.compare.settings import Measure, Timing
from quantlens.core.data import Batch
from quantlens.errors import InputError, QuantlensError
from quantlens.eval import generation as _generation
from quantlens.eval import perplexity as _perplexity
from quantlens.eval import size as _size
from quantlens.eval.interrupts import raise_if_interrupted
from quantlens.eval.perplexity import looks_causal, token_stream

# calibration samples cut from a single long stream (a method with calibration needs batches)
CALIB_SAMPLES = 8


def is_causal_lm(model: nn.Module, data: Any, measure: Measure) -> bool:
    """Whether the comparison runs the language-model task (see the module docstring).

    Args:
        model: the float model; data: the evaluation data; measure: ``causal_lm`` forces it.

    Returns:
        ``measure.causal_lm`` when set, else whether ``model`` looks like a causal LM
        (:func:`looks_causal`) and ``data`` is one token stream (:func:`token_stream`).

    Raises:
        InputError: forced, but the data is not one token stream.
    """
    if measure.causal_lm is False:
        return False
    stream = token_stream(data)
    if measure.causal_lm and stream is None:
        raise InputError(
            "the language-model task needs one token stream as data: a (1, T) int64 tensor "
            'or {"input_ids": (1, T)}; give one, or causal_lm=False'
        )
    return bool(measure.causal_lm) or (stream is not None and looks_causal(model))


def calibration_windows(data: Any, window: int) -> Any:
    """A single long token stream as up to :data:`CALIB_SAMPLES` batches of one ``window``
    each (``{"input_ids": (1, window)}``); other calibration data as it is."""
    stream = token_stream(data)
    if stream is None or stream.shape[1] <= window:
        return data
    n = min(CALIB_SAMPLES, stream.shape[1] // window)
    return [{"input_ids": stream[:, i * window : (i + 1) * window]} for i in range(n)]


@dataclass(frozen=True)
class LMYardstick:
    """What every row of a language-model comparison is measured on and how.

    Attributes:
        stream: the scored tokens ``(1, T)``; prompt: the generation prompt ``(1, P)``.
        measure: the windows and the generation settings; timing: threads.
        memory: record the generation's peak memory; workdir: where models are saved.
    """

    stream: torch.Tensor
    prompt: torch.Tensor
    measure: Measure
    timing: Timing
    memory: bool
    workdir: Path

    @property
    def batch(self) -> Batch:
        """The prompt as a batch (per-layer diagnostics run on it)."""
        return Batch((self.prompt,), {})


def lm_yardstick(data: Any, measure: Measure, timing: Timing, workdir: Path) -> LMYardstick:
    """The :class:`LMYardstick` of ``data`` (one token stream) under ``measure``."""
    stream = token_stream(data)
    if stream is None:
        raise InputError("the language-model task needs one token stream as data (1, T)")
    scored = stream if measure.ppl_tokens is None else stream[:, : measure.ppl_tokens]
    prompt = stream[:, : measure.prompt_tokens]
    return LMYardstick(scored, prompt, measure, timing, measure.memory, workdir)


def measure_lm_row(row: Row, model: nn.Module, ys: LMYardstick, _ref: Any = None) -> Row:
    """Fill ``row`` with the size, perplexity and generation speed of ``model``.

    Args:
        row: the row to fill (its name names the saved folder).
        model: the causal LM measured.
        ys: the stream, the prompt and the settings.

    Returns:
        ``row``.
    """
    folder = ys.workdir / row.name.replace("/", "_").replace(" ", "_")
    try:
        _size.save_for_size(model, folder)
        size = _size.measure_size(model, saved_dir=folder)
    except (QuantlensError, RuntimeError, ValueError) as exc:
        raise_if_interrupted(exc)
        row.notes.append(f"not saved, no disk size: {str(exc).splitlines()[0][:200]}")
        mem, elems = _size.memory_bytes(model)
        size = _size.SizeResult(0, mem, elems)
    row.disk_bytes = size.disk_bytes or None
    row.memory_bytes, row.num_parameters = size.memory_bytes, size.num_parameters
    m = ys.measure
    window = min(m.ppl_window, ys.stream.shape[1])
    stride = None if m.ppl_stride is None else min(m.ppl_stride, window)
    ppl = _perplexity.measure_perplexity(model, ys.stream, window=window, stride=stride)
    row.perplexity, row.perplexity_tokens = ppl.perplexity, ppl.tokens
    gen = _generation.measure_generation(
        model,
        ys.prompt,
        new_tokens=m.new_tokens,
        reps=m.generation_reps,
        warmup=1,
        threads=ys.timing.threads,
    )
    row.prefill_tokens_per_s, row.decode_tokens_per_s = (
        gen.prefill_tokens_per_s,
        gen.decode_tokens_per_s,
    )
    row.time_to_first_token_ms = gen.time_to_first_token_s * 1e3
    row.batch_size, row.threads = 1, gen.threads
    if ys.memory and sys.platform.startswith("linux"):  # the peak counter resets on Linux only
        row.peak_memory_bytes = gen.peak_memory_bytes
    elif ys.memory:
        row.notes.append("peak memory not measured: the peak counter cannot be reset here")
    return row


__all__ = [
    "CALIB_SAMPLES",
    "LMYardstick",
    "calibration_windows",
    "is_causal_lm",
    "lm_yardstick",
    "looks_causal",
    "measure_lm_row",
    "token_stream",
]
