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
perplexity    a causal LM's perplexity on the data's token stream (a few      % increase over
              windows, :mod:`quantlens.eval.perplexity`), lower is better     float
callable      ``fn(outputs, labels) -> float``, higher is better              float - value
============  ==============================================================  ==================

The default is ``perplexity`` for a causal LM given one token stream (what ``ql.compare``
measures it on), ``accuracy`` when the data has labels and the model gives ``(N, classes)``
logits, ``cosine`` for sentence embeddings, else ``sqnr``. Under ``perplexity``,
``max_batches`` is the number of windows scored (default :data:`PPL_WINDOWS` of
:data:`PPL_WINDOW` tokens, fewer where the model's context is shorter), so that the float
model and each variant cost a few forward passes; the loss, a percentage, is what
``ql.compare``'s ``max_ppl_increase`` budgets. The loss of ``sqnr`` is linear
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
from quantlens.eval.perplexity import looks_causal, measure_perplexity, token_stream
from quantlens.eval.quality import Outputs, collect_outputs, prediction_agreement, top1_accuracy

__all__ = [
    "METRICS",
    "MIN_DROP_POINTS",
    "MIN_NOISE_PERCENT",
    "MIN_PPL_PERCENT",
    "PPL_WINDOW",
    "PPL_WINDOWS",
    "Evaluator",
    "Metric",
    "Score",
    "resolve_metric",
]

MIN_DROP_POINTS = 0.2  # the smallest loss worth advice in points of accuracy / cosine / agreement
MIN_NOISE_PERCENT = 0.1  # ... and under the SQNR metric, in % noise power of the signal (30 dB)
MIN_PPL_PERCENT = 0.5  # ... and under perplexity, in % perplexity increase
PPL_WINDOW = 512  # tokens per perplexity window (at most the model's context)
PPL_WINDOWS = 4  # windows scored per variant unless max_batches says otherwise


@dataclass(frozen=True)
class Metric:
    """A named score of a model's outputs against the float reference.

    Attributes:
        name: ``"accuracy"``, ``"cosine"``, ``"agreement"``, ``"sqnr"`` or the callable's name.
        unit: ``"%"`` or ``"dB"``.
        fn: ``fn(reference, outputs) -> value`` on :class:`~quantlens.eval.quality.Outputs`.
        noise: the loss is linear noise power (``sqnr``) instead of ``baseline - value``.
        relative: lower values are better and the loss is the increase over the baseline in
            percent (``perplexity``).
        min_loss: the smallest loss worth advice (:func:`~quantlens.analysis.advise`):
            :data:`MIN_DROP_POINTS` for the built-in % metrics, :data:`MIN_NOISE_PERCENT`
            for ``sqnr``, 0 for a user metric of unknown scale.
    """

    name: str
    unit: str
    fn: Callable[[Outputs, Outputs], float]
    noise: bool = False
    min_loss: float = 0.0
    relative: bool = False

    def loss(self, baseline: float, value: float) -> float:
        """How much worse ``value`` is than ``baseline``, on a scale that adds across layers."""
        if self.noise:
            return 0.0 if value == math.inf else 100.0 * 10.0 ** (-value / 10.0)
        if self.relative:
            return 100.0 * (value / baseline - 1.0)
        return baseline - value

    @property
    def loss_unit(self) -> str:
        if self.relative:
            return "% increase"
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
    "perplexity": Metric(
        "perplexity", "", lambda ref, out: math.nan, min_loss=MIN_PPL_PERCENT, relative=True
    ),
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


def lm_stream(model: nn.Module, data, metric) -> torch.Tensor | None:
    """The token stream ``(1, T)`` a causal LM is scored on by perplexity, or None when the
    metric is another one: ``metric="perplexity"`` (the data must then be one stream), or
    no metric, a causal LM and one token stream as data.

    Raises:
        InputError: ``metric="perplexity"`` but the data is not one token stream.

    Example:
        >>> lm_stream(llm, {"input_ids": ids}, None).shape
        torch.Size([1, 4096])
    """
    if metric is not None and metric != "perplexity":
        return None
    stream = token_stream(data)
    if metric == "perplexity" and stream is None:
        raise InputError(
            "metric 'perplexity' needs one token stream as data: a (1, T) int64 tensor or "
            '{"input_ids": (1, T)}; give one, or choose another metric'
        )
    return stream if metric == "perplexity" or looks_causal(model) else None


def _context(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    n = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return int(n) if isinstance(n, int) else None


class Evaluator:
    """Runs the float model over ``data`` once, then scores any variant against it.

    Args:
        model: the float model.
        data: any form :func:`quantlens.core.data.iter_batches` accepts; for a causal LM,
            one token stream (``(1, T)`` or ``{"input_ids": (1, T)}``).
        metric: see the module docstring.
        max_batches: use at most this many batches (perplexity: windows).

    Attributes:
        reference: the float outputs (cached: the float model never runs again); None
            under perplexity, where the float perplexity is the reference.
        metric: the resolved :class:`Metric`.
        baseline: the metric's value on the float model.
        samples: number of samples scored (perplexity: tokens).
        stream, window: under perplexity, the scored tokens ``(1, T)`` and the window.
    """

    def __init__(
        self, model: nn.Module, data, *, metric=None, max_batches: int | None = None
    ) -> None:
        self.data = data
        self.max_batches = max_batches
        self.stream = lm_stream(model, data, metric)
        self.reference: Outputs | None = None
        if self.stream is not None:
            context = _context(model) or PPL_WINDOW
            self.window = max(2, min(PPL_WINDOW, context, self.stream.shape[1]))
            windows = max_batches or PPL_WINDOWS
            self.stream = self.stream[:, : self.window * windows]
            self.metric = METRICS["perplexity"]
            float_ppl = measure_perplexity(model, self.stream, window=self.window)
            self.baseline, self.samples = float_ppl.perplexity, float_ppl.tokens
        else:
            self.reference = collect_outputs(model, data, limit=max_batches)
            self.metric = resolve_metric(metric, self.reference)
            self.baseline = self.metric.fn(self.reference, self.reference)
            self.samples = int(self.reference.values.shape[0])
        self.runs = 1

    def calibration(self):
        """What methods calibrate on when no calibration data is given: the data itself,
        or under perplexity the scored stream as batches of one window each."""
        if self.stream is None:
            return self.data
        return [{"input_ids": w} for w in self.stream.split(self.window, dim=1) if w.shape[1] > 1]

    @torch.no_grad()
    def measure(self, model: nn.Module) -> Score:
        """Score ``model`` (a quantized or partly quantized variant) against the reference."""
        self.runs += 1
        if self.stream is not None:
            value = measure_perplexity(model, self.stream, window=self.window).perplexity
            loss = self.metric.loss(self.baseline, value)
            return Score(value, loss, value == self.baseline)
        assert self.reference is not None
        out = collect_outputs(model, self.data, limit=self.max_batches)
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
