"""How the analysis tools score a model: a metric, the float reference it is measured
against (computed once and cached), and the *loss* that sensitivity and planning add up.

Metrics (``metric=`` of :func:`~quantlens.analysis.sensitivity` and the planner):

============  ==============================================================  ==================
name          value                                                           loss
============  ==============================================================  ==================
accuracy      top-1 accuracy (%) against the labels                           points lost
cosine        mean per-sample cosine (%) to the float outputs (embeddings:    points lost
              mean-pooled sentence embeddings)
agreement     % of samples whose argmax matches the float model's             points lost
sqnr          SQNR (dB) of all outputs against the float outputs              noise power, % of
                                                                              the signal
callable      ``fn(outputs, labels) -> float``, higher is better              float - value
============  ==============================================================  ==================

The default is ``accuracy`` when the data has labels and the model gives ``(N, classes)``
logits, ``cosine`` for sentence embeddings, else ``sqnr``. The loss of ``sqnr`` is linear
noise power (``100 * 10^(-SQNR/10)``) because noise from independent layers adds in power,
not in dB; the other losses add approximately for small drops.

Example:
    >>> ev = Evaluator(model, test, metric="accuracy")
    >>> ev.baseline, ev.measure(qm)          # (99.1, Score(value=98.4, loss=0.7))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from quantlens.core.metrics import cosine_similarity, sqnr_db
from quantlens.errors import InputError
from quantlens.eval.quality import Outputs, collect_outputs, prediction_agreement, top1_accuracy

__all__ = [
    "METRICS",
    "MIN_DROP_POINTS",
    "MIN_NOISE_PERCENT",
    "Evaluator",
    "Metric",
    "Score",
    "resolve_metric",
]

MIN_DROP_POINTS = 0.2  # the smallest loss worth advice in points of accuracy / cosine / agreement
MIN_NOISE_PERCENT = 0.1  # ... and under the SQNR metric, in % noise power of the signal (30 dB)


@dataclass(frozen=True)
class Metric:
    """A named score of a model's outputs against the float reference.

    Attributes:
        name: ``"accuracy"``, ``"cosine"``, ``"agreement"``, ``"sqnr"`` or the callable's name.
        unit: ``"%"`` or ``"dB"``.
        fn: ``fn(reference, outputs) -> value`` on :class:`~quantlens.eval.quality.Outputs`.
        noise: the loss is linear noise power (``sqnr``) instead of ``baseline - value``.
        min_loss: the smallest loss worth advice (:func:`~quantlens.analysis.advise`):
            :data:`MIN_DROP_POINTS` for the built-in % metrics, :data:`MIN_NOISE_PERCENT`
            for ``sqnr``, 0 for a user metric of unknown scale.
    """

    name: str
    unit: str
    fn: Callable[[Outputs, Outputs], float]
    noise: bool = False
    min_loss: float = 0.0

    def loss(self, baseline: float, value: float) -> float:
        """How much worse ``value`` is than ``baseline``, on a scale that adds across layers."""
        if self.noise:
            return 0.0 if value == math.inf else 100.0 * 10.0 ** (-value / 10.0)
        return baseline - value

    @property
    def loss_unit(self) -> str:
        return "% noise" if self.noise else ("points" if self.unit == "%" else self.unit)


def _accuracy(ref: Outputs, out: Outputs) -> float:
    if ref.labels is None:
        raise InputError(
            "metric 'accuracy' needs labels; give (inputs, labels) data or choose metric='sqnr'"
        )
    return top1_accuracy(out.values, ref.labels)


def _cosine(ref: Outputs, out: Outputs) -> float:
    a, b = ref.values.reshape(ref.values.shape[0], -1), out.values.reshape(out.values.shape[0], -1)
    return 100.0 * float(cosine_similarity(a, b, dim=-1).mean())


def _agreement(ref: Outputs, out: Outputs) -> float:
    return prediction_agreement(ref.values, out.values)


def _sqnr(ref: Outputs, out: Outputs) -> float:
    return sqnr_db(ref.values, out.values)


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", "%", _accuracy, min_loss=MIN_DROP_POINTS),
    "cosine": Metric("cosine", "%", _cosine, min_loss=MIN_DROP_POINTS),
    "agreement": Metric("agreement", "%", _agreement, min_loss=MIN_DROP_POINTS),
    "sqnr": Metric("sqnr", "dB", _sqnr, noise=True, min_loss=MIN_NOISE_PERCENT),
}


def resolve_metric(metric: str | Callable | Metric | None, reference: Outputs) -> Metric:
    """The :class:`Metric` for ``metric`` (a name, a callable or None for the default)."""
    if isinstance(metric, Metric):
        return metric
    if metric is None:
        if (
            reference.labels is not None
            and reference.kind == "logits"
            and reference.values.ndim == 2
        ):
            return METRICS["accuracy"]
        return METRICS["cosine"] if reference.kind == "embedding" else METRICS["sqnr"]
    if callable(metric):
        name = getattr(metric, "__name__", "metric")
        return Metric(name, "", lambda ref, out: float(metric(out.values, out.labels)))
    if metric not in METRICS:
        raise InputError(
            f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}, or pass a callable"
        )
    return METRICS[metric]


@dataclass(frozen=True)
class Score:
    """One measurement: the metric's value and its loss against the float model.

    ``identical`` is True when the variant's outputs equal the float outputs bit for bit
    (the quantized layers do not reach what the metric sees, e.g. a pooler under a
    mean-pooled embedding)."""

    value: float
    loss: float
    identical: bool = False


class Evaluator:
    """Runs the float model over ``data`` once, then scores any variant against it.

    Args:
        model: the float model.
        data: any form :func:`quantlens.core.data.iter_batches` accepts.
        metric: see the module docstring.
        max_batches: use at most this many batches.

    Attributes:
        reference: the float outputs (cached: the float model never runs again).
        metric: the resolved :class:`Metric`.
        baseline: the metric's value on the float model.
        samples: number of samples scored.
    """

    def __init__(
        self, model: nn.Module, data, *, metric=None, max_batches: int | None = None
    ) -> None:
        self.data = data
        self.max_batches = max_batches
        self.reference = collect_outputs(model, data, limit=max_batches)
        self.metric = resolve_metric(metric, self.reference)
        self.baseline = self.metric.fn(self.reference, self.reference)
        self.samples = int(self.reference.values.shape[0])
        self.runs = 1

    @torch.no_grad()
    def measure(self, model: nn.Module) -> Score:
        """Score ``model`` (a quantized or partly quantized variant) against the reference."""
        out = collect_outputs(model, self.data, limit=self.max_batches)
        self.runs += 1
        if out.values.shape != self.reference.values.shape:
            raise InputError(
                f"the variant's outputs {tuple(out.values.shape)} differ in shape from the float "
                f"model's {tuple(self.reference.values.shape)}"
            )
        value = self.metric.fn(self.reference, out)
        return Score(
            value,
            self.metric.loss(self.baseline, value),
            torch.equal(out.values, self.reference.values),
        )
