"""quantlens: quantize PyTorch models and measure what it bought and what it cost.

Example:
    >>> import quantlens as ql
    >>> qm = ql.quantize(model, ql.WeightOnly(bits=4, group_size=128))
    >>> ql.save(qm, "out/"); qm = ql.load("out/")
    >>> report = ql.compare(model, ["dynamic", "static", "w4"], data=test, calib_data=calib)
"""

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
from quantlens.report import Report, compare
from quantlens.sources import LoadedData, ModelSource, load_data, load_model, resolve_model

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
