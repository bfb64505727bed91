"""The analysis part of ``ql.compare(..., analysis=True)``.

For the row the report explains (the recommended one, else the one closest to the
budget), three measurements join the report, each kept as a JSON-ready dict in
``report.sensitivity`` and drawn by :meth:`Report.plot_analysis`:

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
    >>> report.sensitivity["layers"]["jump"]
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
from quantlens.core.observers import get_observer
from quantlens.errors import QuantlensError
from quantlens.eval.compare import Row
from quantlens.eval.interrupts import interrupted_by
from quantlens.methods.base import QuantConfig
from quantlens.report.layers import error_rows

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
    """An ``on_model`` callback for :func:`~quantlens.eval.compare.run_comparison` that keeps
    ``compare_layers(float_model, quantized, [batch]).to_dict()`` per row name (in
    :attr:`results`) and, given ``errors`` (the report's ``layer_errors``), the same
    comparison as :func:`~quantlens.report.layers.error_rows` there: one comparison per row
    serves both."""

    def __init__(self, float_model: nn.Module, errors: dict[str, list] | None = None) -> None:
        self.float_model = float_model
        self.errors = errors
        self.results: dict[str, dict] = {}

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
        self.results[row.name] = result.to_dict()


def analysis_target(report, configs: Mapping[str, QuantConfig]) -> Row | None:
    """The row whose error the analysis explains: the recommended one, else the closest to
    the budget (the one a user wants to fix)."""
    rows = [
        r
        for r in report.rows
        if r.ok and r.method != "float" and isinstance(configs.get(r.name), QuantConfig)
    ]
    best = report.recommended
    if best is not None and best in rows:
        return best
    scored = [r for r in rows if report.accuracy_drop(r) is not None]
    return min(scored, key=report.accuracy_drop) if scored else (rows[0] if rows else None)


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


def run_analysis(
    report,
    model: nn.Module,
    configs: Mapping[str, QuantConfig],
    *,
    data,
    calib_data,
    metric,
    max_batches: int | None,
    progress: bool | None,
    layers: Mapping[str, dict] | None = None,
) -> dict | None:
    """The analysis of :func:`analysis_target`'s row as one dict: ``SensitivityResult.to_dict()``
    plus ``"row"``, ``"layers"`` (from ``layers``, :attr:`LayerRecorder.results`) and, for
    methods with an activation ``observer``, ``"ranges"``. A failing part becomes a note."""
    target = analysis_target(report, configs)
    if target is None:
        return None
    config = configs[target.name]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = sensitivity(
                model,
                data,
                config,
                metric=metric,
                max_batches=max_batches,
                calib_data=calib_data,
                progress=progress,
            )
    except Exception as exc:  # the analysis must not lose the measured rows
        if interrupted_by(exc):
            raise KeyboardInterrupt from exc
        target.notes.append(f"sensitivity not measured: {type(exc).__name__}: {str(exc)[:160]}")
        return None
    out = result.to_dict()
    out["row"] = target.name
    out["notes"] = list(out.get("notes", [])) + [str(w.message) for w in caught]
    if layers and target.name in layers:
        out["layers"] = layers[target.name]
    if quantizes_activations(config):
        try:
            ranges = activation_ranges(
                model,
                calib_data,
                observers=_observers(config),
                max_batches=RANGE_BATCHES,
                progress=progress,
            )
            out["ranges"] = ranges.to_dict()
        except Exception as exc:
            if interrupted_by(exc):
                raise KeyboardInterrupt from exc
            out["notes"].append(
                f"activation ranges not measured: {type(exc).__name__}: {str(exc)[:160]}"
            )
    return out


def sensitivity_result(data: Mapping) -> SensitivityResult:
    """A :class:`~quantlens.analysis.SensitivityResult` rebuilt from its ``to_dict()`` (for
    plots)."""
    return SensitivityResult.from_dict(data)


def layer_result(data: Mapping) -> LayerComparison | None:
    """The analysed row's :class:`~quantlens.analysis.LayerComparison`, if the analysis has one."""
    layers = data.get("layers")
    return LayerComparison.from_dict(layers) if layers else None


def range_result(data: Mapping) -> RangeReport | None:
    """The float model's :class:`~quantlens.analysis.RangeReport`, if the analysis has one."""
    ranges = data.get("ranges")
    return RangeReport.from_dict(ranges) if ranges else None
