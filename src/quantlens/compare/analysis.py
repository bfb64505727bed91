"""The analysis part of ``ql.compare(..., analysis=True)``.

For the row the report explains (the recommended one, else the one closest to the
budget), three measurements join the comparison's :class:`~quantlens.compare.results.Analysis`
(``results.json``'s ``"sensitivity"``), drawn by :meth:`Report.plot_analysis`:

- ``sensitivity`` of its config: each layer quantized alone (``sensitivity.png``);
- its layer-by-layer error, ``"layers"``: :func:`~quantlens.analysis.compare_layers` on
  the very model the comparison measured, on its timing batch (``layer_sqnr.png``);
  :class:`LayerRecorder` keeps it for every row while the comparison runs, so nothing is
  quantized again;
- for methods that quantize activations (Static, QAT), ``"ranges"``: the float model's
  activation ranges on two calibration batches with the clipping range of min-max,
  percentile, MSE and the configured observer (``activation_ranges.png``).

Example:
    >>> report = ql.compare(model, ["static", "w4"], data=test, calib_data=calib, analysis=True)
    >>> report.analysis.layers.jump.name
    'block1.conv2'
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from torch import nn

from quantlens.analysis.advice import quantizes_activations
from quantlens.analysis.layers import LayerComparison, compare_layers
from quantlens.analysis.ranges import RangeReport, activation_ranges
from quantlens.analysis.sensitivity import SensitivityResult, sensitivity
from quantlens.compare.layer_errors import error_rows
from quantlens.compare.results import Analysis, Comparison, LayerErrorRow, Row
from quantlens.compare.settings import DataSettings, Measure
from quantlens.core.observers import get_observer
from quantlens.errors import QuantlensError
from quantlens.eval.interrupts import interrupted_by
from quantlens.methods.base import QuantConfig

__all__ = [
    "RANGE_BATCHES",
    "RANGE_OBSERVERS",
    "LayerRecorder",
    "analysis_target",
    "layer_result",
    "range_result",
    "run_analysis",
    "sensitivity_result",
]

RANGE_OBSERVERS = ("minmax", "percentile", "mse")
RANGE_BATCHES = 2  # calibration batches the activation ranges are collected on


class LayerRecorder:
    """An ``on_model`` callback for :func:`~quantlens.compare.run.run_comparison` that keeps
    ``compare_layers(float_model, quantized, [batch])`` per row name (in :attr:`results`)
    and, given ``errors`` (the comparison's ``layer_errors``), the same comparison as
    :func:`~quantlens.compare.layer_errors.error_rows` there: one comparison per row serves
    both."""

    def __init__(
        self, float_model: nn.Module, errors: dict[str, list[LayerErrorRow]] | None = None
    ) -> None:
        self.float_model = float_model
        self.errors = errors
        self.results: dict[str, LayerComparison] = {}

    def __call__(self, row: Row, qmodel: nn.Module, batch) -> None:
        try:
            result = compare_layers(self.float_model, qmodel, [batch])
        except Exception as exc:  # a diagnostic must not fail the run
            if interrupted_by(exc):
                raise KeyboardInterrupt from exc
            why = f"{type(exc).__name__}: {str(exc)[:120]}"
            if self.errors is not None:
                row.notes.append(f"per-layer error not measured: {why}")
            row.notes.append(f"layer-by-layer error not measured: {why}")
            return
        if self.errors is not None:
            self.errors[row.name] = error_rows(result)
        self.results[row.name] = result


def analysis_target(comparison: Comparison, configs: Mapping[str, QuantConfig]) -> Row | None:
    """The row whose error the analysis explains: the recommended one (the PyTorch row a
    recommended ONNX Runtime row was exported from), else the closest to the budget (the one
    a user wants to fix)."""
    rows = [
        r
        for r in comparison.rows
        if r.ok and r.method != "float" and isinstance(configs.get(r.name), QuantConfig)
    ]
    best = comparison.recommended
    source = next((r for r in rows if best is not None and r.name == best.source_name), None)
    if source is not None:
        return source
    scored = [r for r in rows if comparison.accuracy_drop(r) is not None]
    return min(scored, key=comparison.accuracy_drop) if scored else (rows[0] if rows else None)  # type: ignore[arg-type, return-value]


def _observers(config: QuantConfig) -> tuple[str, ...]:
    names = list(RANGE_OBSERVERS)
    configured = getattr(config, "observer", None)
    if isinstance(configured, str) and configured not in names:
        try:
            get_observer(configured)
            names.append(configured)
        except QuantlensError:
            pass
    return tuple(names)


def _ranges(model: nn.Module, config: QuantConfig, calib_data, progress, notes: list[str]):
    """The float model's activation ranges for ``config``'s observers (None, with a note,
    when they cannot be measured)."""
    try:
        return activation_ranges(
            model,
            calib_data,
            observers=_observers(config),
            max_batches=RANGE_BATCHES,
            progress=progress,
        )
    except Exception as exc:
        if interrupted_by(exc):
            raise KeyboardInterrupt from exc
        notes.append(f"activation ranges not measured: {type(exc).__name__}: {str(exc)[:160]}")
        return None


def run_analysis(
    comparison: Comparison,
    model: nn.Module,
    configs: Mapping[str, QuantConfig],
    data: DataSettings,
    measure: Measure,
    *,
    progress: bool | None = None,
    layers: Mapping[str, LayerComparison] | None = None,
) -> Analysis | None:
    """The :class:`~quantlens.compare.results.Analysis` of :func:`analysis_target`'s row: its
    config's sensitivity, its layer-by-layer error (from ``layers``,
    :attr:`LayerRecorder.results`) and, for methods that quantize activations, the activation
    ranges. A failing part becomes a note.

    Args:
        comparison: the measured rows (the target is chosen among them).
        model: the float model; configs: ``{row name: config}``.
        data: the evaluation and calibration data (calibration: the evaluation data if None).
        measure: the metric and ``analysis_batches``.
        progress: progress bars; layers: the layer-by-layer errors measured during the run.

    Returns:
        The analysis, or None without a row to explain (or when its sensitivity failed: a
        note on the row says why).
    """
    target = analysis_target(comparison, configs)
    if target is None:
        return None
    config = configs[target.name]
    calib = data.calib_data if data.calib_data is not None else data.data
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = sensitivity(
                model,
                data.data,
                config,
                metric=measure.metric,
                max_batches=measure.analysis_batches,
                calib_data=calib,
                progress=progress,
            )
    except Exception as exc:  # the analysis must not lose the measured rows
        if interrupted_by(exc):
            raise KeyboardInterrupt from exc
        target.notes.append(f"sensitivity not measured: {type(exc).__name__}: {str(exc)[:160]}")
        return None
    result.notes = list(result.notes) + [str(w.message) for w in caught]
    ranges = (
        _ranges(model, config, calib, progress, result.notes)
        if quantizes_activations(config)
        else None
    )
    return Analysis(target.name, result, (layers or {}).get(target.name), ranges)


def _typed(data: Analysis | Mapping) -> Analysis:
    return data if isinstance(data, Analysis) else Analysis.from_dict(data)


def sensitivity_result(data: Analysis | Mapping) -> SensitivityResult:
    """The analysis' :class:`~quantlens.analysis.SensitivityResult` (``data``: an
    :class:`~quantlens.compare.results.Analysis` or its ``to_dict()``)."""
    return _typed(data).sensitivity


def layer_result(data: Analysis | Mapping) -> LayerComparison | None:
    """The analysed row's :class:`~quantlens.analysis.LayerComparison`, if the analysis has one."""
    return _typed(data).layers


def range_result(data: Analysis | Mapping) -> RangeReport | None:
    """The float model's :class:`~quantlens.analysis.RangeReport`, if the analysis has one."""
    return _typed(data).ranges
