"""The kernel paths a :class:`~quantlens.nn.dynamic_conv.DynamicConv2d` runs on.

``layer.kernel = name`` forces one; ``"auto"`` takes the first registered path that accepts
the input. A path gets the uint8 codes ``q`` of the (padded) input with its scale ``s`` and
zero point ``z`` (``x ~ s * (q - z)``) and returns the float32 output.

=========  ==========================================================================
path       what runs
=========  ==========================================================================
onednn     ``torch.ops.onednn.qconv2d_pointwise``: oneDNN's uint8 x int8 convolution
           with a float32 output (bias and both scales applied inside), on a weight
           packed once by ``torch.ops.onednn.qconv_prepack``. CPU, PyTorch built with
           oneDNN (every x86 build). ``quantized::conv2d`` would need an output scale
           before the output exists, and ``quantized::conv2d_dynamic`` reuses the input's
           scale for the output; this op returns float directly.
reference  dequantize the codes and ``F.conv2d`` in float32 (the same quantized values;
           any device)
=========  ==========================================================================
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from quantlens.nn.dynamic_conv import DynamicConv2d


@dataclass(frozen=True)
class ConvKernel:
    """One way to run a :class:`DynamicConv2d` forward.

    Attributes:
        name: the path name (``layer.kernel = name`` forces it).
        accepts: ``accepts(x) -> None`` if it can run on this input, else the reason.
        prepare: ``prepare(layer) -> state`` (a packed weight; cached on the layer).
        run: ``run(layer, state, q, s, z) -> y`` float32 for the uint8 codes ``q`` of the
            (padded) input with scale ``s`` and zero point ``z``.
    """

    name: str
    accepts: Callable[[torch.Tensor], str | None]
    prepare: Callable[[DynamicConv2d], object]
    run: Callable[[DynamicConv2d, object, torch.Tensor, float, int], torch.Tensor]


_KERNELS: dict[str, ConvKernel] = {}


def register_conv_kernel(kernel: ConvKernel) -> ConvKernel:
    """Add a kernel path; paths registered earlier are tried first by ``"auto"``."""
    _KERNELS[kernel.name] = kernel
    return kernel


def conv_kernels() -> dict[str, ConvKernel]:
    """Every registered path by name."""
    return dict(_KERNELS)


@functools.cache
def _has_onednn_qconv() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qconv_prepack")


def _onednn_accepts(x: torch.Tensor) -> str | None:
    if x.device.type != "cpu":
        return f"it runs on CPU only, the input is on {x.device.type}"
    if not _has_onednn_qconv():
        return "this PyTorch build has no oneDNN int8 convolution"
    return None


def geometry(layer: DynamicConv2d) -> tuple[list[int], list[int], list[int]]:
    return list(layer.stride), list(layer.conv_padding), list(layer.dilation)


def _onednn_prepare(layer: DynamicConv2d):
    stride, padding, dilation = geometry(layer)
    packed = torch.ops.onednn.qconv_prepack(
        layer.weight, layer.weight_scale, 1.0, 0, stride, padding, dilation, layer.groups, None
    )
    return packed, torch.zeros(layer.out_channels, dtype=torch.long)  # (weight zero points)


def _onednn_run(layer, state, q, s, z):
    stride, padding, dilation = geometry(layer)
    packed, zeros = state
    return torch.ops.onednn.qconv2d_pointwise(
        q, s, z, packed, layer.weight_scale, zeros, layer.bias,
        stride, padding, dilation, layer.groups,
        1.0, 0, torch.float32, "none", [], "",
    )  # fmt: skip


def _reference_run(layer, state, q, s, z):
    stride, padding, dilation = geometry(layer)
    x = (q.float() - z) * s
    return F.conv2d(
        x, layer.dequantized_weight(), layer.bias, stride, padding, dilation, layer.groups
    )


register_conv_kernel(ConvKernel("onednn", _onednn_accepts, _onednn_prepare, _onednn_run))
register_conv_kernel(ConvKernel("reference", lambda x: None, lambda layer: None, _reference_run))
