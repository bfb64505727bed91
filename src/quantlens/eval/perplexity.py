"""Perplexity of a causal language model over a token stream, with sliding windows.

A stream longer than the model's context is cut into windows of ``window`` tokens that start
every ``stride`` tokens (the method of Hugging Face's perplexity guide). Each token is scored
once, in the first window that holds it after at least one token of context, with as much
preceding context as that window gives. Disjoint windows (``stride == window``, the default)
cannot score the first token of each window; ``stride < window`` scores every token but the
stream's first and gives each more context (closer to the model's true perplexity) for more
compute. Perplexity is ``exp`` of the mean negative log-likelihood of the scored tokens.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from quantlens.core.data import first_batch, first_tensor
from quantlens.errors import InputError, QuantlensError, check_number


@dataclass(frozen=True)
class PerplexityResult:
    """What :func:`measure_perplexity` measured.

    Attributes:
        perplexity: ``exp(nll)``.
        nll: mean negative log-likelihood per scored token (nats).
        tokens: tokens scored (the stream's length minus the number of windows for disjoint
            windows; minus one with overlapping windows).
        window: tokens per window.
        stride: tokens between window starts.
    """

    perplexity: float
    nll: float
    tokens: int
    window: int
    stride: int


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    takes_cache = "use_cache" in inspect.signature(model.forward).parameters
    out = model(ids, use_cache=False) if takes_cache else model(ids)
    logits = out.logits if hasattr(out, "logits") else first_tensor(out)
    if logits is None or logits.ndim != 3:
        raise InputError(
            "perplexity needs a causal LM returning logits (batch, tokens, vocab); "
            f"{type(model).__name__} returned {type(out).__name__}"
        )
    return logits  # (1, L, V)


@torch.no_grad()  # not inference_mode: some quantized tensor subclasses fail under it
def measure_perplexity(
    model: nn.Module, input_ids: torch.Tensor, *, window: int = 512, stride: int | None = None
) -> PerplexityResult:
    """Perplexity of ``model`` on one token stream, window by window at batch 1.

    Args:
        model: a causal LM: ``model(ids)`` returns logits ``(1, L, vocab)`` (a Hugging Face
            ``*ForCausalLM`` output or a tensor), float or quantized.
        input_ids: the stream, ``(T,)`` or ``(1, T)`` int64 with ``T >= 2``.
        window: tokens per forward pass (at most the model's context).
        stride: tokens between window starts, ``1 <= stride <= window``; default ``window``
            (disjoint windows).

    Returns:
        A :class:`PerplexityResult`.

    Raises:
        InputError: the stream is not one row of at least 2 tokens, or window / stride are
            out of range.

    Example:
        >>> ids = shakespeare.token_stream(smollm2.tokenizer(), "test", max_tokens=4096)
        >>> measure_perplexity(model, ids, window=512).perplexity  # SmolLM2 on Hamlet: ~42.6
    """
    ids = input_ids.reshape(1, -1) if input_ids.ndim == 1 else input_ids
    if ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] < 2:
        raise InputError(
            "perplexity needs one token stream (T,) or (1, T) with T >= 2, "
            f"got {tuple(input_ids.shape)}"
        )
    window = check_number("window", window, 2, integer=True)
    stride = window if stride is None else check_number("stride", stride, 1, window, integer=True)
    was_training = model.training
    model.eval()
    total, count, scored_to = 0.0, 0, 1  # positions < scored_to are scored (position 0 never)
    length = ids.shape[1]
    try:
        for begin in range(0, length - 1, stride):
            end = min(begin + window, length)
            first = max(scored_to, begin + 1)  # a token needs context inside its window
            if end <= first:
                continue
            logits = _logits(model, ids[:, begin:end])  # (1, end - begin, V)
            # logits at position p predict token p + 1: score tokens first .. end - 1
            pred = logits[0, first - begin - 1 : end - begin - 1].float()  # (n, V)
            targets = ids[0, first:end]  # (n,)
            total += F.cross_entropy(pred, targets, reduction="sum").item()
            count += targets.numel()
            scored_to = end
            if end == length:
                break
    finally:
        model.train(was_training)
    nll = total / count
    return PerplexityResult(math.exp(nll), nll, count, window, stride)


def token_stream(data: Any) -> torch.Tensor | None:
    """The data's token stream ``(1, T)`` int64, or None when its first batch is not one
    integer row: a tensor ``(T,)`` / ``(1, T)`` or ``{"input_ids": ...}`` of one row."""
    try:
        batch = first_batch(data)
    except QuantlensError:
        return None
    ids = batch.kwargs.get("input_ids") if batch.kwargs else None
    if ids is None and len(batch.args) == 1 and not batch.kwargs:
        ids = batch.args[0]
    if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32):
        return None
    if ids.ndim == 1:
        ids = ids.reshape(1, -1)
    if ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] < 2:
        return None
    return ids.long()


def looks_causal(model: nn.Module) -> bool:
    """A Hugging Face ``*ForCausalLM`` model, a GPT-style ``*LMHeadModel`` (GPT-2), or a
    decoder with ``generate`` (not an encoder-decoder)."""
    if type(model).__name__.endswith("ForCausalLM"):
        return True
    config = getattr(model, "config", None)
    return (
        callable(getattr(model, "generate", None))
        and config is not None
        and not getattr(config, "is_encoder_decoder", False)
        and (
            bool(getattr(config, "is_decoder", False))
            or type(model).__name__.endswith("LMHeadModel")
        )
    )
