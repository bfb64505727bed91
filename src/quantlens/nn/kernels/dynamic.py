"""The dynamic kernel paths (:class:`~quantlens.nn.dynamic_linear.DynamicLinear`): compiled,
int_mm, fbgemm and reference for int8 weights, fp16 and upcast for float16 weights, with the
cases automatic dispatch picks them for (the layer's module describes each path).

Every int8 path computes ``y = s * (ws * acc - z * c) + b`` from the same integer codes
(:mod:`quantlens.nn.act_quant`), so they differ only in float rounding order.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from quantlens.errors import InputError
from quantlens.nn.act_quant import activation_codes, activation_int8, quantize_activations
from quantlens.nn.kernels.compiled import BUILD_COMMAND, default_ops
from quantlens.nn.kernels.registry import Case, KernelPath, register_kernel
from quantlens.nn.shapes import Shapes


def _any(layer: Any) -> None:
    return None


def _no_state(layer: Any, dtype: torch.dtype) -> None:
    return None


def _row_correction(layer: Any) -> torch.Tensor:
    """``c[n] = ws[n] * sum_k Wq[n, k]`` ``(N,)``: what the zero-point ``z`` subtracts."""
    return layer.weight_scale * layer.weight.sum(dim=1, dtype=torch.int32).float()


# --- fbgemm: quantized::linear_with_input_q_dq_qweight_dq_output_fp32 ----------------------


def _fbgemm_prepare(layer: Any, dtype: torch.dtype) -> tuple[Any, torch.Tensor]:
    n = layer.out_features
    qw = torch._make_per_channel_quantized_tensor(
        layer.weight, layer.weight_scale.double(), torch.zeros(n, dtype=torch.long), 0
    )
    return torch.ops.quantized.linear_prepack(qw, None), _row_correction(layer)


def _fbgemm_run(layer: Any, state: tuple[Any, torch.Tensor], x2d: torch.Tensor) -> torch.Tensor:
    packed, c = state
    xs, s, z = quantize_activations(x2d, layer.per_token)  # the op rounds xs to the codes
    g = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
        xs, 1.0, 0, packed
    )  # (M, N) = sum q W: ws applied, exact integer sums
    g.addr_(z.reshape(-1).expand(g.shape[0]), c, alpha=-1)  # sum (q - z) W
    return _scale_add_bias(g, s, layer.bias)


def _scale_add_bias(y: torch.Tensor, s: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``s * y + bias`` in one pass, in place in ``y`` (a fresh GEMM output)."""
    if bias is None:
        return y.mul_(s)
    if torch.is_grad_enabled() and (bias.requires_grad or s.requires_grad):  # no out= then
        return torch.addcmul(bias, y, s)
    return torch.addcmul(bias, y, s, out=y)


# --- int_mm: torch._int_mm --------------------------------------------------------------------


def _int_mm_format(layer: Any) -> str | None:
    if layer.weight.device.type == "cuda" and (layer.in_features % 8 or layer.out_features % 8):
        return "torch._int_mm on CUDA needs K, N multiples of 8"
    return None


def _int_mm_prepare(layer: Any, dtype: torch.dtype) -> torch.Tensor:
    return layer.weight.t()  # (K, N) view: the faster layout on CPU


def _int_mm_run(layer: Any, state: torch.Tensor, x2d: torch.Tensor) -> torch.Tensor:
    wt = state
    if x2d.device.type == "cuda" and x2d.shape[0] <= 16:  # (automatic dispatch never asks)
        raise InputError(
            "kernel path 'int_mm' on CUDA needs more than 16 rows; set layer.kernel = 'auto'"
        )
    # q = codes - zero-point in [-127, 127]: with the zero-point out of the codes, the int8
    # GEMM needs no per-row correction afterwards
    q, s = activation_int8(x2d, layer.per_token)  # (M, K) int8, (M, 1)
    acc = torch._int_mm(q, wt)  # (M, N) int32 = sum (q - z) Wq, exact
    y = torch.mul(acc, layer.weight_scale)  # y = s * ws * acc + b: two passes
    return _scale_add_bias(y, s, layer.bias)


# --- compiled: quantlens::dynamic_linear_int8 (nn/csrc/dynamic_int8.cpp) ---------------------


def _compiled_format(layer: Any) -> str | None:
    ops = default_ops()
    if ops.load():
        return None
    return f"the compiled kernel is not available ({ops.reason}); build it: {BUILD_COMMAND}"


def _compiled_prepare(layer: Any, dtype: torch.dtype) -> tuple[Any, ...]:
    op = default_ops().dynamic_linear_int8
    return op, layer.weight.t(), layer.weight_scale, layer.bias, layer.per_token


def _compiled_run(layer: Any, state: tuple[Any, ...], x2d: torch.Tensor) -> torch.Tensor:
    op, wt, ws, bias, per_token = state
    if _needs_aten(x2d, bias):
        return _int_mm_run(layer, wt, x2d)
    return op(x2d, wt, ws, bias, per_token)  # the int_mm path's output, bit for bit


def _needs_aten(x2d: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether a call must run int_mm's ATen ops instead of the compiled op: under autograd
    (the op has no backward), or while a tracer or compiler records the call (a traced or
    exported model must run where the library is not loaded)."""
    if torch.is_grad_enabled() and (x2d.requires_grad or (bias is not None and bias.requires_grad)):
        return True
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


# --- reference and the float16 paths ---------------------------------------------------------


def _reference_run(layer: Any, state: None, x2d: torch.Tensor) -> torch.Tensor:
    q, s, z = activation_codes(x2d, layer.per_token)
    w = layer.weight.float() * layer.weight_scale[:, None]
    return F.linear((q - z) * s, w, layer.bias)


def _fp16_prepare(layer: Any, dtype: torch.dtype) -> Any:
    return torch.ops.quantized.linear_prepack_fp16(layer.weight.float(), layer.bias)


def _fp16_run(layer: Any, packed: Any, x2d: torch.Tensor) -> torch.Tensor:
    return torch.ops.quantized.linear_dynamic_fp16(x2d, packed)


def _upcast_run(layer: Any, state: None, x2d: torch.Tensor) -> torch.Tensor:
    return F.linear(x2d, layer.weight.float(), layer.bias)


# --- registry ------------------------------------------------------------------------------

_X86 = ("x86", "fbgemm")

# The compiled op: int_mm's math and GEMM in three passes instead of ~16, so it serves
# int_mm's CPU cases and wins over it (priority 5 < 10) where it is built (K >= 2, as int_mm).
register_kernel(
    KernelPath(
        "compiled",
        _compiled_format,
        _compiled_prepare,
        _compiled_run,
        family="dynamic",
        compute_dtype=torch.float32,
        dtype="int8",
        quantizes_activations=True,
        shapes=Shapes(min_in=2),
        devices=("cpu",),
        cases=(
            Case(needs=("vnni",), devices=("cpu",), priority=5),
            Case(needs=("amx",), devices=("cpu",), priority=5),
        ),
    )
)
# torch._int_mm on CPU (torch 2.13) returns wrong sums for K = 1 at any M, N >= 2.
# Automatic dispatch takes it on CPUs whose int8 dot-product instructions (VNNI, AMX) make
# PyTorch's int8 GEMM fast (elsewhere PyTorch runs it as a plain loop), and on CUDA above
# 16 rows (what torch._int_mm takes there).
register_kernel(
    KernelPath(
        "int_mm",
        _int_mm_format,
        _int_mm_prepare,
        _int_mm_run,
        family="dynamic",
        compute_dtype=torch.float32,
        dtype="int8",
        quantizes_activations=True,
        shapes=Shapes(min_in=2),
        devices=("cpu", "cuda"),
        cases=(
            Case(needs=("vnni",), devices=("cpu",), priority=10),
            Case(needs=("amx",), devices=("cpu",), priority=10),
            Case(tokens=(17, None), devices=("cuda",), priority=10),
        ),
    )
)
register_kernel(
    KernelPath(
        "fbgemm",
        _any,
        _fbgemm_prepare,
        _fbgemm_run,
        family="dynamic",
        compute_dtype=torch.float32,
        dtype="int8",
        quantizes_activations=True,
        devices=("cpu",),
        engines=_X86,
        cases=(Case(priority=20),),
    )
)
register_kernel(
    KernelPath(
        "reference",
        _any,
        _no_state,
        _reference_run,
        family="dynamic",
        compute_dtype=torch.float32,
        dtype="int8",
        quantizes_activations=True,
        cases=(Case(tokens=(0, None), priority=1000),),  # the fallback: always runs
    )
)
register_kernel(
    KernelPath(
        "fp16",
        _any,
        _fp16_prepare,
        _fp16_run,
        family="dynamic",
        compute_dtype=torch.float32,
        dtype="float16",
        devices=("cpu",),
        engines=_X86,
        cases=(Case(priority=10),),
    )
)
register_kernel(
    KernelPath(
        "upcast",
        _any,
        _no_state,
        _upcast_run,
        family="dynamic",
        compute_dtype=torch.float32,
        dtype="float16",
        cases=(Case(tokens=(0, None), priority=1000),),  # the fallback: always runs
    )
)
