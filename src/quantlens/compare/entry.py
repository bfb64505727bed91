"""``compare()``: every method on one model and data, measured against float, with an
optional analysis of the recommended method, as one typed
:class:`~quantlens.compare.results.Comparison`. (``ql.compare`` wraps it in a
:class:`quantlens.report.Report` that renders it.)

Example:
    >>> comparison = compare(model, ["dynamic", "static", "w4"], data=test, calib_data=calib)
    >>> comparison.recommended.name
    'static'
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from quantlens.compare import analysis as _analysis
from quantlens.compare.layer_errors import layer_errors as per_layer_errors
from quantlens.compare.lm import is_causal_lm
from quantlens.compare.presets import check_names, make_config
from quantlens.compare.results import Comparison, LayerErrorRow, Row
from quantlens.compare.run import run
from quantlens.compare.settings import Budget, Hooks, from_options, settings_from
from quantlens.core.spread import gather_objects
from quantlens.errors import InputError
from quantlens.eval.interrupts import raise_if_interrupted
from quantlens.methods.base import QuantConfig

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from quantlens.compare.settings import CompareOptions, Measure, Timing


def _configs(methods, model: nn.Module | None = None) -> dict[str, QuantConfig]:
    """``{row name: config}`` from what ``compare`` accepts; preset names are made for ``model``."""
    if isinstance(methods, QuantConfig):
        return {methods.method: methods}
    if isinstance(methods, Mapping):
        return {
            str(k): (make_config(v, model) if isinstance(v, str) else v) for k, v in methods.items()
        }
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if isinstance(methods, Sequence):
        names = [m for m in methods if isinstance(m, str)]
        check_names(names)
        out = {}
        for m in methods:
            if isinstance(m, str):
                out[m] = make_config(m, model)
            elif isinstance(m, QuantConfig):
                out[m.method if m.method not in out else f"{m.method}-{len(out)}"] = m
            else:
                raise InputError(
                    f"cannot use a {type(m).__name__} as a method; give a config or a name"
                )
        return out
    raise InputError(
        "methods must be a dict of configs, a list of configs/names, or one config; "
        f"got {type(methods).__name__}"
    )


def _layer_error_hook(model: nn.Module, errors: dict[str, list[LayerErrorRow]]):
    """An ``on_model`` callback that records each row's per-layer error in ``errors``."""

    def hook(row: Row, qmodel: nn.Module, batch) -> None:
        try:
            errors[row.name] = per_layer_errors(model, qmodel, [batch])
        except Exception as exc:  # noqa: BLE001 - a diagnostic plot must not fail the run
            raise_if_interrupted(exc)
            row.notes.append(
                f"per-layer error not measured: {type(exc).__name__}: {str(exc)[:120]}"
            )

    return hook


def _both(first, second):
    """An ``on_model`` callback that calls ``first`` and then ``second`` (when given)."""
    if second is None:
        return first

    def both(row: Row, qmodel: nn.Module, batch) -> None:
        first(row, qmodel, batch)
        second(row, qmodel, batch)

    return both


def compare(
    model: nn.Module,
    methods: Any,
    *,
    data: Any = None,
    timing: Timing | None = None,
    measure: Measure | None = None,
    budget: Budget | None = None,
    hooks: Hooks | None = None,
    **options: Unpack[CompareOptions],
) -> Comparison:
    """Quantize ``model`` with every method and measure each against float.

    Args:
        model: the float model (left untouched).
        methods: ``{name: config}``, a list of configs and/or preset names (``"dynamic"``,
            ``"static"``, ``"qat"``, ``"w8"``, ``"w4"``, ...), or ``"dynamic,w4"``; weight-only
            presets also cover the model's Conv2d layers when it has any
            (:func:`quantlens.compare.presets.make_config`).
        data: evaluation data in any form ``iter_batches`` accepts (labels give accuracy), or
            a :class:`~quantlens.compare.settings.DataSettings` with the calibration and QAT
            training data too.
        timing: latency settings (:class:`~quantlens.compare.settings.Timing`).
        measure: what is measured besides size, latency and quality: peak memory, per-layer
            error, the analysis, the runtimes (``runtimes=("torch", "onnxruntime")``: each
            model also exported to ONNX and measured in ONNX Runtime, a row after its PyTorch
            row) (:class:`~quantlens.compare.settings.Measure`).
        budget: what the recommendation may lose and minimises
            (:class:`~quantlens.compare.settings.Budget`).
        hooks: progress bars, callbacks, the command recorded
            (:class:`~quantlens.compare.settings.Hooks`).
        options: the fields of those objects as flat keywords instead: ``calib_data``,
            ``train_data``, ``qat_epochs``, ``example_inputs``, ``reps``, ``warmup``,
            ``threads``, ``metric``, ``memory``, ``layer_errors``, ``analysis``,
            ``analysis_batches``, ``runtimes``, ``max_accuracy_drop``, ``objective``,
            ``progress``, ``command``, ``on_start``, ``on_row``; for a causal LM ``causal_lm``,
            ``ppl_window``, ``ppl_stride``, ``ppl_tokens``, ``prompt_tokens``, ``new_tokens``,
            ``generation_reps``, ``max_perplexity_increase``
            (:class:`~quantlens.compare.settings.CompareOptions`).

    A causal LM (a ``*ForCausalLM`` model on one token stream, or ``causal_lm=True``) is
    measured by perplexity, decode and prefill tokens/s and size instead, and recommended by
    ``max_perplexity_increase`` (:mod:`quantlens.compare.lm`).

    Returns:
        A :class:`~quantlens.compare.results.Comparison`. A method that fails is a row with
        its error; Ctrl-C returns the rows measured so far (``interrupted``).

    Example:
        >>> compare(model, {"w4": ql.WeightOnly(bits=4)}, data=test, reps=5).recommended
    """
    options_left = dict(options)
    budget = from_options(Budget, budget, options_left)
    data_s, timing_s, measure_s, hooks_s = settings_from(
        data, {"timing": timing, "measure": measure, "hooks": hooks}, options_left, "compare"
    )
    configs = _configs(methods, model)
    if measure_s.analysis and is_causal_lm(model, data_s.data, measure_s):
        warnings.warn(
            "the analysis ranks layers by accuracy and does not run for a causal LM; "
            "use ql.sensitivity on the model instead",
            stacklevel=2,
        )
        measure_s = dataclasses.replace(measure_s, analysis=False)
    errors: dict[str, list[LayerErrorRow]] = {}
    on_model = _layer_error_hook(model, errors) if measure_s.layer_errors else None
    # each row's layer-by-layer error, measured once for the analysis and the layer plot
    recorder = None
    if measure_s.analysis:
        recorder = _analysis.LayerRecorder(model, errors if measure_s.layer_errors else None)
        on_model = recorder
    if on_model is not None:
        hooks_s = Hooks(**{**vars(hooks_s), "on_model": _both(on_model, hooks_s.on_model)})
    comparison = run(model, configs, data_s, timing_s, measure_s, hooks_s)
    # under a process group each rank measured the layers of its own rows: share them
    parts = gather_objects(
        (errors, recorder.results if recorder else {}), what="gathering the per-layer errors"
    )
    if len(parts) > 1:
        found = {k: v for part, _ in parts for k, v in part.items()}
        errors.clear()  # in the order of the rows
        errors.update({r.name: found[r.name] for r in comparison.rows if r.name in found})
        if recorder is not None:
            recorder.results = {k: v for _, part in parts for k, v in part.items()}
    comparison.budget, comparison.layer_errors = budget, errors
    if recorder is not None and not comparison.interrupted:
        try:
            comparison.analysis = _analysis.run_analysis(
                comparison,
                model,
                configs,
                data_s,
                measure_s,
                progress=hooks_s.progress,
                layers=recorder.results,
            )
        except KeyboardInterrupt:  # keep the measured rows
            comparison.interrupted = True
    return comparison


__all__ = ["compare"]
