"""Compare: many configs over one model and data, measured the same way, as a typed
:class:`Comparison` (rows, a baseline, a recommendation, the optional analysis).

The package sits between ``eval``/``analysis`` (it runs both) and ``report`` (which only
renders what it returns). One concept per module:

- :mod:`.settings`: what to measure, which data, how to time, the budget, the callbacks;
- :mod:`.results`: :class:`Row`, :class:`Comparison` and the analysis records, with the
  ``results.json`` format;
- :mod:`.presets`: the short method names (``w4``, ``static``) and the sweep grids;
- :mod:`.measure`: one row (quantize, then size, latency, memory, quality);
- :mod:`.runtimes`: the row of a model exported to ONNX and measured in ONNX Runtime;
- :mod:`.run`: the run over float and every config (:func:`run_comparison`);
- :mod:`.layer_errors`, :mod:`.analysis`: the per-layer error and the analysis of one row;
- :mod:`.recommend`: the best row within a budget and the sentence that says so;
- :mod:`.entry`: :func:`compare`.

``quantlens.compare`` as an attribute of the top-level package is ``ql.compare`` (which
wraps :func:`compare` in a :class:`quantlens.report.Report`); import these modules with
``from quantlens.compare import run`` or ``from quantlens.compare.run import ...``.

Example:
    >>> from quantlens.compare import compare, Timing
    >>> comparison = compare(model, ["static", "w4"], data=test, timing=Timing(reps=5))
    >>> comparison.recommended.name
    'static'
"""

from quantlens.compare.entry import compare
from quantlens.compare.results import Analysis, Comparison, LayerErrorRow, Row, RunInfo
from quantlens.compare.run import run_comparison
from quantlens.compare.settings import Budget, DataSettings, Hooks, Measure, Timing

__all__ = [
    "Analysis",
    "Budget",
    "Comparison",
    "DataSettings",
    "Hooks",
    "LayerErrorRow",
    "Measure",
    "Row",
    "RunInfo",
    "Timing",
    "compare",
    "run_comparison",
]
