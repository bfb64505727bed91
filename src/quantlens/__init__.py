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
from quantlens.methods.int8_graph import register_custom_module
from quantlens.methods.qat import QAT, train_qat
from quantlens.methods.static import Static

__all__ = [
    "Batch",
    "QAT",
    "QScheme",
    "QTensor",
    "QuantConfig",
    "QuantSummary",
    "QuantlensError",
    "Static",
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
    "register_custom_module",
    "save",
    "train_qat",
    "unpack",
]
