"""Tensor-level quantization math: no nn.Module here."""

from quantlens.core.data import Batch, first_batch, iter_batches
from quantlens.core.fake_quant import fake_quantize
from quantlens.core.metrics import cosine_similarity, max_abs_error, mse, sqnr_db
from quantlens.core.observers import Observer, get_observer, register_observer
from quantlens.core.packing import pack, unpack
from quantlens.core.qparams import compute_qparams
from quantlens.core.qtensor import QTensor, quantize_tensor
from quantlens.core.scheme import QScheme

__all__ = [
    "Batch",
    "Observer",
    "QScheme",
    "QTensor",
    "compute_qparams",
    "cosine_similarity",
    "fake_quantize",
    "first_batch",
    "get_observer",
    "iter_batches",
    "max_abs_error",
    "mse",
    "pack",
    "quantize_tensor",
    "register_observer",
    "sqnr_db",
    "unpack",
]
