"""Output quality of a quantized model against its float original.

- ``accuracy``: top-1 accuracy (%) when the data has labels; for embedding models (a
  Hugging Face encoder run on tokenized text: token states mean-pooled over the attention
  mask) the mean cosine similarity (%) of each sample's embedding to the float model's;
- ``metric``: the value of a user callable ``metric(outputs, labels) -> float`` when given;
- ``agreement``: % of samples whose prediction (argmax) matches the float model's; for
  embeddings, % whose nearest neighbour among the other samples is unchanged;
- ``sqnr_db`` and ``cosine``: of all outputs together vs the float outputs
  (:mod:`quantlens.core.metrics`).

Example:
    >>> ref = collect_outputs(model, test)
    >>> q = measure_quality(ref, collect_outputs(qm, test))
    >>> q.accuracy, q.agreement, q.sqnr_db
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from quantlens.core.data import Batch, check_finite, iter_batches
from quantlens.core.metrics import cosine_similarity, prediction_agreement, sqnr_db
from quantlens.errors import InputError, QuantizationFailedError

OutputKind = Literal["logits", "embedding"]
"""What a model's outputs are: class logits, or sentence embeddings (mean-pooled hidden
states)."""


@dataclass
class Outputs:
    """A model's outputs over a data set.

    Attributes:
        values: outputs concatenated over batches, ``(N, ...)``: logits, or ``(N, H)``
            sentence embeddings when ``kind == "embedding"``.
        labels: ``(N,)`` labels, or None when the data has none.
        kind: ``"logits"`` or ``"embedding"``.
        raw: the unreduced outputs per batch, for a user metric.
    """

    values: torch.Tensor
    labels: torch.Tensor | None
    kind: OutputKind
    raw: list


@dataclass(frozen=True)
class QualityResult:
    """Quality of one model against the float reference (see the module docstring)."""

    accuracy: float | None
    metric: float | None
    agreement: float | None
    sqnr_db: float
    cosine: float
    kind: OutputKind


def _primary(output) -> torch.Tensor:
    """The main tensor of a model output: a tensor, ``last_hidden_state``/``logits``, or the first
    item."""
    if isinstance(output, torch.Tensor):
        return output
    for attr in ("logits", "last_hidden_state"):
        value = getattr(output, attr, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise InputError(
        f"cannot read a tensor from a model output of type {type(output).__name__}; "
        "make the model return a tensor (or a tuple whose first item is one)"
    )


def _is_token_states(out: torch.Tensor, batch: Batch) -> bool:
    mask = batch.kwargs.get("attention_mask")
    if mask is None and len(batch.args) >= 2:
        mask = batch.args[1]
    return mask is not None and out.ndim == 3 and out.shape[:2] == mask.shape


def _mask_of(batch: Batch) -> torch.Tensor:
    return batch.kwargs["attention_mask"] if "attention_mask" in batch.kwargs else batch.args[1]


@torch.inference_mode()
def collect_outputs(model: nn.Module, data, *, limit: int | None = None) -> Outputs:
    """Run ``model`` over ``data`` (eval mode) and gather its outputs and labels.

    Args:
        model: float or quantized model.
        data: any form :func:`quantlens.core.data.iter_batches` accepts.
        limit: use at most this many batches.

    Returns:
        :class:`Outputs`. Encoder token states ``(B, L, H)`` with an attention mask are
        mean-pooled into unit-norm sentence embeddings (``kind="embedding"``).
    """
    from quantlens.zoo.minilm import mean_pool

    was_training = model.training
    model.eval()
    values, labels, raw = [], [], []
    kind: OutputKind = "logits"
    try:
        for batch in iter_batches(data, limit=limit):
            out = batch.run(model)
            raw.append(out)
            t = _primary(out)
            if _is_token_states(t, batch):
                kind = "embedding"
                t = mean_pool(t, _mask_of(batch))
            values.append(t.detach().float())
            if batch.labels is not None:
                labels.append(batch.labels)
    finally:
        model.train(was_training)
    if not values:
        raise InputError("the data yielded no batch; give at least one batch of inputs")
    if labels and len(labels) != len(values):
        raise InputError(
            "some batches have labels and some do not; give labels for every batch or none"
        )
    return Outputs(torch.cat(values), torch.cat(labels) if labels else None, kind, raw)


def top1_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in % of ``(N, classes)`` logits against ``(N,)`` labels.

    Example:
        >>> top1_accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        50.0
    """
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise InputError(
            f"top-1 accuracy needs (N, classes) outputs and (N,) labels, got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}; pass metric= for other tasks"
        )
    return 100.0 * float((logits.argmax(-1) == labels).float().mean())


def _user_metric(metric: Callable, outputs: Outputs) -> float:
    values = outputs.values
    labels = outputs.labels
    return float(metric(values, labels))


def measure_quality(
    reference: Outputs, outputs: Outputs, *, metric: Callable | None = None
) -> QualityResult:
    """Compare a model's outputs with the float reference's (see the module docstring).

    Args:
        reference: float model outputs from :func:`collect_outputs`.
        outputs: the quantized model's outputs on the same data.
        metric: optional ``metric(values, labels) -> float`` (higher is better), called on
            :attr:`Outputs.values` and labels (None when the data has none).

    Returns:
        A :class:`QualityResult`.
    """
    ref, out = reference.values, outputs.values
    check_finite(
        ref,
        "the float model's output",
        fix="check the model and the data: with no finite "
        "reference there is nothing to compare against",
    )
    check_finite(
        out,
        "the quantized model's output",
        error=QuantizationFailedError,
        fix="this configuration breaks the model; try more bits, a clipping observer, or skip "
        "the layer that overflows",
    )
    if ref.shape != out.shape:
        raise InputError(
            f"outputs differ in shape from the float model's: {tuple(out.shape)} vs "
            f"{tuple(ref.shape)}"
        )
    accuracy = agreement = None
    if reference.kind == "embedding":
        from quantlens.zoo.minilm import retrieval_agreement

        accuracy = 100.0 * float(cosine_similarity(ref, out, dim=-1).mean())
        if ref.shape[0] >= 2:
            agreement = 100.0 * retrieval_agreement(ref, out)
    else:
        if reference.labels is not None and ref.ndim == 2 and reference.labels.ndim == 1:
            accuracy = top1_accuracy(out, reference.labels)
        if ref.ndim >= 2 and ref.shape[-1] > 1:
            agreement = prediction_agreement(ref, out)
    value = _user_metric(metric, outputs) if metric is not None else None
    return QualityResult(
        accuracy, value, agreement, sqnr_db(ref, out), cosine_similarity(ref, out), reference.kind
    )
