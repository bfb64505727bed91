"""Find where quantization hurts and what to do about it.

- :func:`compare_layers`: layer-by-layer error of a quantized model against its float original;
- :func:`sensitivity`: quantize one layer at a time (or all but one) and rank the layers;
- :func:`activation_ranges`: per-layer activation statistics, histograms, observer ranges;
"""

from quantlens.analysis.layers import LayerComparison, LayerError, compare_layers
from quantlens.analysis.ranges import ActivationStats, RangeReport, activation_ranges
from quantlens.analysis.scoring import Evaluator, Metric
from quantlens.analysis.sensitivity import LayerSensitivity, SensitivityResult, sensitivity

__all__ = [
    "ActivationStats",
    "RangeReport",
    "activation_ranges",
    "Evaluator",
    "LayerComparison",
    "LayerError",
    "LayerSensitivity",
    "Metric",
    "SensitivityResult",
    "compare_layers",
    "sensitivity",
]
