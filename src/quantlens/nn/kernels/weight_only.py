"""The weight-only kernel paths (:class:`~quantlens.nn.QLinear`): reference, dense,
dense_bf16, int4pack, int8pack and fbgemm, with the cases automatic dispatch picks them for
(:mod:`quantlens.nn.kernels` describes each path, its tolerance and the rules)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from quantlens.nn.kernels.registry import Case, KernelPath, register_kernel
from quantlens.nn.shapes import Shapes

if TYPE_CHECKING:
    from quantlens.nn.qlinear import QLinear

# --- helpers shared by the paths -------------------------------------------------------


def _bias(layer: QLinear, dtype: torch.dtype) -> torch.Tensor | None:
    return None if layer.bias is None else layer.bias.detach().to(dtype)


def _axis(layer: QLinear) -> int:
    """The scheme's channel or group axis (0 per tensor, where there is none)."""
    return 0 if layer.scheme.axis is None else layer.scheme.axis


def _group(layer: QLinear) -> int:
    """Elements per scale along in_features: the group size, or all of them."""
    s = layer.scheme
    return s.group_size if s.granularity == "per_group" and s.group_size else layer.weight_shape[1]


def _uniform_per_row(layer: QLinear) -> str | None:
    s = layer.scheme
    if s.codebook is not None:
        return f"it needs uniform codes, not the {s.codebook} codebook"
    if s.granularity == "per_group" or (s.granularity == "per_channel" and _axis(layer) % 2 != 0):
        return "it needs one scale per output channel (per-channel axis 0 or per-tensor)"
    return None


def _row_scale_zero(layer: QLinear) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-row float32 scale and int32 unsigned zero-point, shape ``(out,)``."""
    n = layer.weight_shape[0]
    return layer.scale.float().expand(n).contiguous(), layer.unsigned_zero_point().expand(
        n
    ).contiguous()


# --- reference and dense ------------------------------------------------------------------


def _reference_run(layer: QLinear, state: None, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, layer.dequantized_weight(torch.float32), _bias(layer, torch.float32))


def _dense_prepare(layer: QLinear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    return layer.dequantized_weight(dtype), _bias(layer, dtype)


def _dense_run(layer: QLinear, state: Any, x: torch.Tensor) -> torch.Tensor:
    weight, bias = state
    return F.linear(x, weight, bias)


# --- int4pack: torch._weight_int4pack_mm_for_cpu ----------------------------------------------

INT4_GROUPS = (256, 128, 64, 32)  # group sizes the kernel takes, largest (fewest scales) first


def _int4_group(layer: QLinear) -> int | None:
    k, span = layer.weight_shape[1], _group(layer)
    return next((g for g in INT4_GROUPS if span % g == 0 and k % g == 0), None)


def _int4_accepts(layer: QLinear) -> str | None:
    s = layer.scheme
    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        return "this torch has no _weight_int4pack_mm_for_cpu"
    if s.codebook is not None or s.bits > 4:
        return "it needs uniform codes of at most 4 bits"
    if s.granularity == "per_channel" and _axis(layer) % 2 != 0:
        return "it needs per-channel scales along axis 0"
    if s.granularity == "per_group" and (
        _axis(layer) % 2 != 1 or layer.weight_shape[1] % _group(layer)
    ):
        return "it needs whole groups along in_features"
    if _int4_group(layer) is None:
        return f"it needs groups (or in_features) that are a multiple of {INT4_GROUPS[-1]}"
    return None


def _int4_prepare(layer: QLinear, dtype: torch.dtype) -> tuple[Any, ...]:
    n, k = layer.weight_shape
    g = _int4_group(layer)
    if g is None:  # _int4_accepts sends no such layer here
        raise ValueError(f"no int4 group size fits in_features {k}")
    scale = layer.scale.float()
    zero = layer.unsigned_zero_point()
    if scale.ndim < 2:  # per-tensor / per-channel: one value per row
        scale, zero = scale.expand(n).reshape(n, 1), zero.expand(n).reshape(n, 1)
    # Codes narrower than 4 bits are shifted by d so that their zero-point sits at the
    # kernel's 8: w = s * (c - z) = s * ((c + d) - 8) + s * (8 - z - d), offset exactly 0.
    shift = (8 - zero).clamp(0, 16 - (1 << layer.scheme.bits))
    codes = layer.unsigned_codes().to(torch.int32)  # (N, K)
    codes += shift.repeat_interleave(k // shift.shape[1], dim=1)  # now in [0, 16)
    offset = scale * (8 - zero - shift).float()
    reps = (k // g) // scale.shape[1]  # kernel groups per stored scale
    scales_zeros = torch.stack([scale, offset], dim=-1).repeat_interleave(reps, dim=1)
    scales_zeros = scales_zeros.transpose(0, 1).contiguous()  # (K/g, N, 2)
    packed = torch._convert_weight_to_int4pack_for_cpu(codes, 1)
    return packed, g, scales_zeros.to(dtype), _bias(layer, dtype)


def _int4_run(layer: QLinear, state: Any, x: torch.Tensor) -> torch.Tensor:
    packed, g, scales_zeros, bias = state
    y = torch._weight_int4pack_mm_for_cpu(x, packed, g, scales_zeros)
    return y if bias is None else y.add_(bias)


# --- int8pack: torch._weight_int8pack_mm -----------------------------------------------------


def _int8_accepts(layer: QLinear) -> str | None:
    if not hasattr(torch.ops.aten, "_weight_int8pack_mm"):
        return "this torch has no _weight_int8pack_mm"
    return _uniform_per_row(layer)


def _int8_prepare(layer: QLinear, dtype: torch.dtype) -> tuple[Any, ...]:
    s = layer.scheme
    scale, zero = _row_scale_zero(layer)
    codes = layer.unsigned_codes().to(torch.int32)
    correction = None
    if s.bits <= 7 or s.symmetric:  # c - z fits int8
        weight = codes - zero[:, None]
    else:  # 8-bit asymmetric: c - 128, plus sum(x) * s * (128 - z)
        weight = codes - 128
        correction = (scale * (128 - zero)).to(dtype)
    return weight.to(torch.int8).contiguous(), scale.to(dtype), correction, _bias(layer, dtype)


def _int8_run(layer: QLinear, state: Any, x: torch.Tensor) -> torch.Tensor:
    weight, scale, correction, bias = state
    y = torch._weight_int8pack_mm(x, weight, scale)
    if correction is not None:
        y = y + x.sum(-1, keepdim=True) * correction
    return y if bias is None else y.add_(bias)


# --- fbgemm / x86 dynamic int8 (W8A8) -------------------------------------------------------


def _fbgemm_weight(layer: QLinear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int8 codes, float64 scales, int64 zero-points, one scale per output row. Per-row
    uniform codes are used as they are; other schemes (per-group, codebooks) are the
    dequantized weight re-quantized to symmetric int8 per row."""
    if _uniform_per_row(layer) is None:
        scale, zero = _row_scale_zero(layer)
        codes = (layer.unsigned_codes().to(torch.int32) - 128).to(torch.int8)  # u - 128
        return codes, scale.double(), (zero - 128).long()
    weight = layer.dequantized_weight(torch.float32)
    scale = (weight.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
    codes = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scale.double(), torch.zeros_like(scale, dtype=torch.long)


def _fbgemm_prepare(layer: QLinear, dtype: torch.dtype) -> Any:
    codes, scale, zero = _fbgemm_weight(layer)
    with warnings.catch_warnings():  # quantized dtypes are deprecated upstream, still the API
        warnings.simplefilter("ignore")
        qweight = torch._make_per_channel_quantized_tensor(codes, scale, zero, 0)
        return torch.ops.quantized.linear_prepack(qweight, _bias(layer, torch.float32))


def _fbgemm_run(layer: QLinear, state: Any, x: torch.Tensor) -> torch.Tensor:
    return torch.ops.quantized.linear_dynamic(x, state, True)


# --- registry ------------------------------------------------------------------------------

_LOW_BITS = (1, 2, 3, 4)
SMALL_LAYER = 2 * 2**20  # weight elements: below this a float32 weight stays in cache
FALLBACK = "dense"
_CPU = ("cpu",)


def _any(layer: QLinear) -> None:
    return None


register_kernel(
    KernelPath(
        "reference",
        _any,
        lambda layer, dtype: None,
        _reference_run,
        compute_dtype=torch.float32,
    )
)
register_kernel(
    KernelPath(
        FALLBACK,
        _any,
        _dense_prepare,
        _dense_run,
        compute_dtype=torch.float32,
        rtol=1e-6,
        cases=(
            Case(numel=(0, SMALL_LAYER), priority=50),
            Case(tokens=(0, None), priority=1000),  # the fallback: always runs
        ),
    )
)
register_kernel(
    KernelPath(
        "dense_bf16",
        _any,
        _dense_prepare,
        _dense_run,
        compute_dtype=torch.bfloat16,
        rtol=1e-2,
        cases=(Case(tokens=(16, None), needs=("avx512_bf16",), priority=30),),
    )
)
register_kernel(
    KernelPath(
        "int4pack",
        _int4_accepts,
        _int4_prepare,
        _int4_run,
        compute_dtype=torch.bfloat16,
        rtol=1e-2,
        shapes=Shapes(in_multiple=32, out_multiple=16),
        devices=_CPU,
        cases=(
            Case(bits=_LOW_BITS, tokens=(1, 16), needs=("avx512_bf16",), priority=10),
            Case(bits=_LOW_BITS, tokens=(1, 32), priority=60),
        ),
    )
)
register_kernel(
    KernelPath(
        "int8pack",
        _int8_accepts,
        _int8_prepare,
        _int8_run,
        compute_dtype=torch.bfloat16,
        rtol=1e-2,
        shapes=Shapes(in_multiple=16),
        devices=_CPU,
        cases=(
            Case(tokens=(1, 16), needs=("avx512_bf16",), priority=25),
            Case(tokens=(1, 32), priority=70),
        ),
    )
)
register_kernel(
    KernelPath(
        "fbgemm",
        _any,
        _fbgemm_prepare,
        _fbgemm_run,
        compute_dtype=torch.float32,
        rtol=4e-2,
        quantizes_activations=True,
        devices=_CPU,
        engines=("x86", "fbgemm"),
        cases=(Case(priority=20),),
    )
)
