"""PyTorch's quantized engines (``torch.backends.quantized.engine``): which ones this
machine has, switching between them, and a tiny self-test of each."""

from __future__ import annotations

from typing import Literal, get_args

import torch

from quantlens.errors import BackendError, UnknownNameError
from quantlens.methods.backends.torch_ao._upstream import quiet

Backend = Literal["x86", "fbgemm", "onednn", "qnnpack"]
"""A quantized engine of PyTorch's that Static, QAT and Dynamic can run on."""
BACKENDS: tuple[str, ...] = get_args(Backend)
# fbgemm/x86 kernels accumulate uint8 x int8 pairs in int16 on CPUs without VNNI; PyTorch's
# defaults give their activations 7 bits (reduce_range) to avoid the overflow.
REDUCE_RANGE = {"x86": True, "fbgemm": True, "onednn": False, "qnnpack": False}


def available_engines() -> list[str]:
    """The quantized engines this PyTorch build and CPU support (``"none"`` left out)."""
    return [e for e in torch.backends.quantized.supported_engines if e != "none"]


def use_engine(backend: str) -> str:
    """Set ``torch.backends.quantized.engine`` for ``backend`` and return the engine name.

    Raises:
        UnknownNameError: ``backend`` is not one of :data:`BACKENDS`.
        BackendError: this machine's PyTorch lacks the engine.

    Example:
        >>> use_engine("qnnpack"); torch.backends.quantized.engine
        'qnnpack'
    """
    if backend not in BACKENDS:
        raise UnknownNameError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    engines = available_engines()
    if backend not in engines:
        raise BackendError(
            f"the quantized engine {backend!r} is not available on this machine (it has: "
            f"{', '.join(engines) or 'none'}); pick one of those with backend=..."
        )
    if torch.backends.quantized.engine != backend:
        torch.backends.quantized.engine = backend
    return backend


def quantized_op_errors() -> dict[str, float]:
    """Run a tiny int8 linear, conv2d and dynamic linear on the active engine.

    Returns:
        The largest error of each against float, in output quantization steps
        (``{"linear": ..., "conv2d": ..., "dynamic linear": ...}``): an engine that works
        stays within a few steps. Raises whatever the engine raises when it does not run.

    Example:
        >>> max(quantized_op_errors().values()) < 3
        True
    """
    with quiet():
        from torch.ao.nn import quantized as nnq
        from torch.ao.nn.quantized import dynamic as nnqd

        g = torch.Generator().manual_seed(0)
        x = torch.rand(2, 8, generator=g)
        w = torch.randn(4, 8, generator=g) * 0.3
        qx = torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8)
        qw = torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8)
        linear = nnq.Linear(8, 4)
        linear.set_weight_bias(qw, None)
        linear.scale, linear.zero_point = 0.02, 128
        err_linear = (linear(qx).dequantize() - x @ w.T).abs().max().item()

        xc = torch.rand(1, 2, 6, 6, generator=g)
        wc = torch.randn(3, 2, 3, 3, generator=g) * 0.3
        conv = nnq.Conv2d(2, 3, 3)
        conv.set_weight_bias(
            torch.quantize_per_tensor(wc, float(wc.abs().max()) / 127, 0, torch.qint8), None
        )
        conv.scale, conv.zero_point = 0.05, 128
        qxc = torch.quantize_per_tensor(xc, 1 / 255, 0, torch.quint8)
        err_conv = (conv(qxc).dequantize() - torch.nn.functional.conv2d(xc, wc)).abs().max().item()

        dyn = nnqd.Linear(8, 4)
        dyn.set_weight_bias(qw, None)
        # reduce_range=False: qnnpack ignores it anyway and warns when it is True
        y_dyn = torch.ops.quantized.linear_dynamic(x, dyn._packed_params._packed_params, False)
        err_dyn = (y_dyn - x @ w.T).abs().max().item()
    return {
        "linear": err_linear / 0.02,
        "conv2d": err_conv / 0.05,
        "dynamic linear": err_dyn / 0.02,
    }
