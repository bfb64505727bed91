"""The single entry points: quantize, prepare / convert, dequantize, save, load, export.

One module per concept: ``quantize_model`` (quantize, prepare, prepare_qat, convert,
dequantize), ``checkpoints`` (save, load) and ``deploy`` (export); every name is importable
from ``quantlens.api``.
"""

import quantlens.methods  # noqa: F401  (registers the built-in methods)
from quantlens.api.checkpoints import __version__, load, save
from quantlens.api.deploy import export
from quantlens.api.quantize_model import convert, dequantize, prepare, prepare_qat, quantize

__all__ = [
    "__version__",
    "convert",
    "dequantize",
    "export",
    "load",
    "prepare",
    "prepare_qat",
    "quantize",
    "save",
]
