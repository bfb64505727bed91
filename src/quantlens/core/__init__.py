"""Tensor-level quantization math: no nn.Module here."""

from quantlens.core.data import Batch, first_batch, iter_batches
from quantlens.core.fake_quant import fake_quantize
from quantlens.core.packing import pack, unpack
from quantlens.core.qparams import compute_qparams
from quantlens.core.qtensor import QTensor, quantize_tensor
from quantlens.core.scheme import QScheme

__all__ = [
    "Batch",
    "QScheme",
    "QTensor",
    "compute_qparams",
    "fake_quantize",
    "first_batch",
    "iter_batches",
    "pack",
    "quantize_tensor",
    "unpack",
]
