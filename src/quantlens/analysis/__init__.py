"""Find where quantization hurts and what to do about it.

- :func:`compare_layers`: layer-by-layer error of a quantized model against its float original;
"""

from quantlens.analysis.layers import LayerComparison, LayerError, compare_layers

__all__ = ["LayerComparison", "LayerError", "compare_layers"]
