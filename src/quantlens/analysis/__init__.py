"""Find where quantization hurts and what to do about it.

- :func:`compare_layers`: layer-by-layer error of a quantized model against its float original;
- :func:`sensitivity`: quantize one layer at a time (or all but one) and rank the layers;
- :func:`activation_ranges`: per-layer activation statistics, histograms, observer ranges;
- :func:`plan_mixed_precision` / :func:`search_plan`: per-layer bit widths under a budget;
- :func:`advise`: a concrete suggestion per problem layer (:func:`apply_advice` applies them).
"""

from quantlens.analysis.advice import Advice, advise, apply_advice
from quantlens.analysis.layers import LayerComparison, LayerError, compare_layers
from quantlens.analysis.planner import (
    LayerTable,
    MixedPrecisionPlan,
    plan_mixed_precision,
    search_plan,
)
from quantlens.analysis.ranges import ActivationStats, RangeReport, activation_ranges
from quantlens.analysis.scoring import Evaluator, Metric
from quantlens.analysis.sensitivity import LayerSensitivity, SensitivityResult, sensitivity

__all__ = [
    "ActivationStats",
    "Advice",
    "Evaluator",
    "LayerComparison",
    "LayerError",
    "LayerSensitivity",
    "LayerTable",
    "Metric",
    "MixedPrecisionPlan",
    "RangeReport",
    "SensitivityResult",
    "activation_ranges",
    "advise",
    "apply_advice",
    "compare_layers",
    "plan_mixed_precision",
    "search_plan",
    "sensitivity",
]
