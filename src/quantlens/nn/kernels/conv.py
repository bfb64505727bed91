"""The kernel paths of :class:`~quantlens.nn.QConv2d`: ``dense`` (the default: the weight
dequantized once into a float32 cache, ``F.conv2d`` in float32) and ``reference``
(dequantized on every call, no cache). Both compute exactly the dequantize-then-convolve
result; packing saves disk and state-dict bytes, not run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from quantlens.nn.kernels.registry import Case, KernelPath, register_kernel

if TYPE_CHECKING:
    from quantlens.nn.qconv import QConv2d


def _any(layer: QConv2d) -> None:
    return None


def _conv(layer: QConv2d, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    bias = None if layer.bias is None else layer.bias.float()
    return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)


def _dense_prepare(layer: QConv2d, dtype: torch.dtype) -> torch.Tensor:
    return layer.dequantized_weight(dtype)


def _dense_run(layer: QConv2d, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return _conv(layer, weight, x)


def _no_state(layer: QConv2d, dtype: torch.dtype) -> None:
    return None


def _reference_run(layer: QConv2d, state: None, x: torch.Tensor) -> torch.Tensor:
    return _conv(layer, layer.dequantized_weight(torch.float32), x)


register_kernel(
    KernelPath(
        "dense",
        _any,
        _dense_prepare,
        _dense_run,
        family="conv",
        compute_dtype=torch.float32,
        cases=(Case(tokens=(0, None), priority=1000),),  # the only automatic choice
    )
)
register_kernel(
    KernelPath(
        "reference",
        _any,
        _no_state,
        _reference_run,
        family="conv",
        compute_dtype=torch.float32,
    )
)
