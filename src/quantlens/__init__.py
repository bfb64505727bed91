"""quantlens: quantize PyTorch models and measure what it bought and what it cost.

Example:
    >>> import quantlens as ql
    >>> qm = ql.quantize(model, ql.WeightOnly(bits=4, group_size=128))
    >>> ql.save(qm, "out/"); qm = ql.load("out/")
    >>> report = ql.compare(model, ["dynamic", "static", "w4"], data=test, calib_data=calib)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn as _nn

from quantlens import analysis, nn, testing, zoo
from quantlens.api import (
    __version__,
    convert,
    dequantize,
    export,
    load,
    prepare,
    prepare_qat,
    quantize,
    save,
)
from quantlens.compare.entry import compare as _run_compare
from quantlens.core import (
    Batch,
    QScheme,
    QTensor,
    compute_qparams,
    fake_quantize,
    iter_batches,
    pack,
    quantize_tensor,
    unpack,
)
from quantlens.errors import QuantlensError
from quantlens.methods import (
    QAT,
    Dynamic,
    QuantConfig,
    QuantSummary,
    Static,
    WeightOnly,
    register_custom_module,
    sync_qat,
    train_qat,
)
from quantlens.report import Report
from quantlens.sources import LoadedData, ModelSource, load_data, load_model, resolve_model

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from quantlens.compare.settings import Budget, CompareOptions, Hooks, Measure, Timing


def compare(
    model: _nn.Module,
    methods: Any,
    *,
    data: Any = None,
    timing: Timing | None = None,
    measure: Measure | None = None,
    budget: Budget | None = None,
    hooks: Hooks | None = None,
    **options: Unpack[CompareOptions],
) -> Report:
    """Quantize ``model`` with every method, measure each against float, and report.

    :func:`quantlens.compare.compare` runs it (see there for every argument); the
    :class:`Report` it returns renders the :class:`~quantlens.compare.Comparison`.

    Args:
        model: the float model (left untouched).
        methods: ``{name: config}``, a list of configs and/or preset names, or ``"dynamic,w4"``.
        data: evaluation data, or a :class:`~quantlens.compare.DataSettings`.
        timing, measure, budget, hooks: the settings objects (:mod:`quantlens.compare.settings`).
        options: their fields as keywords: ``calib_data``, ``train_data``, ``qat_epochs``,
            ``example_inputs``, ``reps``, ``warmup``, ``threads``, ``metric``, ``memory``,
            ``layer_errors``, ``analysis``, ``analysis_batches``, ``max_accuracy_drop``,
            ``objective``, ``progress``, ``command``, ``on_start``, ``on_row``; for a causal
            LM ``max_perplexity_increase`` (%), ``ppl_window``, ``ppl_tokens``,
            ``new_tokens``, ... (:class:`~quantlens.compare.Measure`).

    Returns:
        A :class:`Report`. A method that fails is a row with its error; Ctrl-C returns
        the rows measured so far (``report.interrupted``).

    Example:
        >>> report = ql.compare(model, {"dynamic": ql.Dynamic(), "w4": ql.WeightOnly(bits=4)},
        ...                     data=test, calib_data=calib)
        >>> report.to_html("report.html")
    """
    given = {"timing": timing, "measure": measure, "budget": budget, "hooks": hooks}
    return Report(_run_compare(model, methods, data=data, **given, **options))


__all__ = [
    "QAT",
    "Batch",
    "Dynamic",
    "LoadedData",
    "ModelSource",
    "QScheme",
    "QTensor",
    "QuantConfig",
    "QuantSummary",
    "QuantlensError",
    "Report",
    "Static",
    "WeightOnly",
    "__version__",
    "analysis",
    "compare",
    "compute_qparams",
    "convert",
    "dequantize",
    "export",
    "fake_quantize",
    "iter_batches",
    "load",
    "load_data",
    "load_model",
    "nn",
    "pack",
    "prepare",
    "prepare_qat",
    "quantize",
    "quantize_tensor",
    "register_custom_module",
    "resolve_model",
    "save",
    "sync_qat",
    "testing",
    "train_qat",
    "unpack",
    "zoo",
]
