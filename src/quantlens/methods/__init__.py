"""Quantization methods: one module per method, each a config dataclass + apply function.

Importing this package registers the built-in methods (see methods/base.py for how to add one).
"""

from quantlens.methods.base import QuantConfig, QuantSummary, get_method, methods, register_method
from quantlens.methods.dynamic import Dynamic
from quantlens.methods.int8_graph import register_custom_module
from quantlens.methods.qat import QAT, train_qat
from quantlens.methods.qat_ranks import sync_qat
from quantlens.methods.static import Static
from quantlens.methods.weight_only import WeightOnly

__all__ = [
    "QAT",
    "Dynamic",
    "QuantConfig",
    "QuantSummary",
    "Static",
    "WeightOnly",
    "get_method",
    "methods",
    "register_custom_module",
    "register_method",
    "sync_qat",
    "train_qat",
]
