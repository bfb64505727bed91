"""Quantization methods: one module per method, each a config dataclass + apply function.

Importing this package registers the built-in methods (see methods/base.py for how to add one).
"""

from quantlens.methods.base import QuantConfig, QuantSummary, get_method, methods, register_method

__all__ = ["QuantConfig", "QuantSummary", "get_method", "methods", "register_method"]
