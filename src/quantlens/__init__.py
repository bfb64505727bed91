"""quantlens: quantize PyTorch models and measure what it bought and what it cost.

Example:
    >>> import quantlens as ql
    >>> qm = ql.quantize(model, ql.WeightOnly(bits=4, group_size=128))
    >>> ql.save(qm, "out/"); qm = ql.load("out/")
"""

from quantlens.api import __version__, convert, export, load, prepare, prepare_qat, quantize, save
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
from quantlens.methods.base import QuantConfig, QuantSummary

__all__ = [
    "Batch",
    "QScheme",
    "QTensor",
    "QuantConfig",
    "QuantSummary",
    "QuantlensError",
    "__version__",
    "compute_qparams",
    "convert",
    "export",
    "fake_quantize",
    "iter_batches",
    "load",
    "pack",
    "prepare",
    "prepare_qat",
    "quantize",
    "quantize_tensor",
    "save",
    "unpack",
]
