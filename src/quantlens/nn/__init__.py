"""Quantized modules built on the core layer: weight-only QLinear / QEmbedding / QConv2d,
dynamic DynamicLinear / DynamicRNN, fake quantization; the layer registry
(:mod:`.registry`: which quantized class replaces which float layer) and the kernel-case
registry (:mod:`.kernels`: which kernel path runs a layer)."""

from quantlens.nn.kernels import KernelPath, force_kernel, kernel_paths, register_kernel
from quantlens.nn.packed import PackedWeight
from quantlens.nn.qconv import QConv2d
from quantlens.nn.qembedding import QEmbedding
from quantlens.nn.qlinear import QLinear
from quantlens.nn.registry import (
    DynamicSpec,
    quantized_class_for,
    quantized_classes,
    register_quantized,
)

__all__ = [
    "DynamicSpec",
    "KernelPath",
    "PackedWeight",
    "QConv2d",
    "QEmbedding",
    "QLinear",
    "force_kernel",
    "kernel_paths",
    "quantized_class_for",
    "quantized_classes",
    "register_kernel",
    "register_quantized",
]
