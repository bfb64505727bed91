"""Kernel paths for weight-only layers: which matmul runs a :class:`QLinear`, and when.

Every path is a :class:`KernelPath` in a registry. A path says which weight formats it can
run (``accepts``), builds its kernel-format weight once per layer (``prepare``, cached on the
layer, never in the state dict, rebuilt after ``load_state_dict``/``.to()``), runs a 2-D
``(tokens, in_features)`` input (``run``), and lists the :class:`Case` s it serves under
automatic dispatch. ``select`` walks the paths in ``priority`` order and takes the first
whose cases match the layer's bits, the number of tokens (product of the input's leading
dims) and the input dtype, and which accepts the layer's weight format; ``dense`` is the
fallback that always runs.

Paths (tolerance = ``||y - ref|| / ||ref||`` against ``reference``, checked by tests/nn):

=============  ==========================================================  ==========
path           what runs                                                  tolerance
=============  ==========================================================  ==========
reference      dequantize (float32) on every call, then ``F.linear`` in       exact
               float32; no cache. The definition the others are tested
               against.
dense          cached dequantized weight in the input's dtype, then         fp32 1e-5,
               ``F.linear``: any scheme; memory = a dense weight.           bf16 2e-2
dense_bf16     cached bfloat16 dequantized weight; input cast to bf16        2e-2
int4pack       ``torch._weight_int4pack_mm_for_cpu`` on bf16 activations     2e-2
               (input cast to bf16 and back): uniform codes of <= 4 bits,
               per-group (a multiple of 32 elements along in_features),
               per-channel or per-tensor. The zero-point is folded into a
               float offset per group: ``w = s * (c - 8) + s * (8 - z)``
               (codes under 4 bits are shifted so that the offset is 0).
int8pack       ``torch._weight_int8pack_mm`` on bf16 activations: uniform     2e-2
               per-channel / per-tensor codes of any width; 8-bit
               asymmetric codes use ``c - 128`` plus a rank-1 correction
               ``sum(x) * s * (128 - z)``.
fbgemm         ``torch.ops.quantized.linear_dynamic`` (W8A8: activations       6e-2
               quantized per call to 8 bits, reduce_range); per-channel /
               per-tensor uniform codes of any width; float32 compute.
=============  ==========================================================  ==========

Automatic choice on this project's reference CPU (2 cores, AVX2; see
benchmarks/weight_only_layers.py and benchmarks/results/weight_only_layers.json):

AUTO_TABLE_PLACEHOLDER

How to add a path: write ``accepts(layer) -> str | None`` (why it cannot run the layer's
weight format, or None), ``prepare(layer, dtype) -> state`` and ``run(layer, state, x) ->
y`` (``x`` already in the path's compute dtype, ``y`` with bias added), then
``register_kernel(KernelPath(...))`` with the cases it should win. Force a path with
``layer.kernel = "name"`` or, for a whole model, ``with force_kernel(model, "name"):``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from quantlens.errors import SchemeError, UnknownNameError

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class Case:
    """A situation a path serves under automatic dispatch.

    Args:
        bits: code widths served.
        tokens: ``(low, high)``: served when ``low <= tokens < high`` (``high`` None: no limit).
        dtypes: input dtypes served.
    """

    bits: tuple[int, ...] = tuple(range(1, 9))
    tokens: tuple[int, int | None] = (1, None)
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES

    def matches(self, bits: int, tokens: int, dtype: torch.dtype) -> bool:
        low, high = self.tokens
        return bits in self.bits and dtype in self.dtypes and low <= tokens and (high is None or tokens < high)


@dataclass(frozen=True)
class KernelPath:
    """One way to compute ``x @ W.T + b`` for a weight-only layer (see the module docstring).

    Args:
        name: what ``layer.kernel = name`` selects.
        accepts: ``layer -> None`` if the path can run this layer's weight, else the reason.
        prepare: ``(layer, compute_dtype) -> state``, cached on the layer.
        run: ``(layer, state, x2d) -> y2d`` with ``x2d`` in ``compute_dtype``.
        compute_dtype: the dtype the path computes in (None: the input's).
        cases: when automatic dispatch picks it.
        priority: lower is tried first.
        rtol: bound on ``||y - ref|| / ||ref||`` against the reference path.
    """

    name: str
    accepts: Callable[[nn.Module], str | None]
    prepare: Callable[[nn.Module, torch.dtype], Any]
    run: Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]
    compute_dtype: torch.dtype | None = None
    cases: tuple[Case, ...] = ()
    priority: int = 50
    rtol: float = 0.0


_PATHS: dict[str, KernelPath] = {}
FALLBACK = "dense"


def register_kernel(path: KernelPath) -> KernelPath:
    """Add (or replace) a kernel path in the registry."""
    _PATHS[path.name] = path
    return path


def kernel_paths() -> dict[str, KernelPath]:
    """All registered paths by name, in priority order."""
    return dict(sorted(_PATHS.items(), key=lambda kv: kv[1].priority))


def get_kernel(name: str) -> KernelPath:
    if name not in _PATHS:
        raise UnknownNameError(f"unknown kernel path {name!r}; valid: auto, {', '.join(kernel_paths())}")
    return _PATHS[name]


def why_not(layer: nn.Module, name: str) -> str | None:
    """Why path ``name`` cannot run ``layer`` (cached per layer), or None if it can."""
    return layer.cached(("accepts", name), lambda: get_kernel(name).accepts(layer))


def select(layer: nn.Module, tokens: int, dtype: torch.dtype) -> KernelPath:
    """The path ``layer`` runs for ``tokens`` rows of ``dtype`` input: the forced one, else
    the first path (by priority) with a matching case that accepts the layer's weight."""
    forced = layer.kernel
    if forced != "auto":
        reason = why_not(layer, forced)
        if reason:
            raise SchemeError(f"kernel path {forced!r} cannot run {layer.scheme.describe()}: {reason}; "
                              "set layer.kernel = 'auto'")
        return _PATHS[forced]
    bits = layer.scheme.bits
    for path in kernel_paths().values():
        if any(c.matches(bits, tokens, dtype) for c in path.cases) and why_not(layer, path.name) is None:
            return path
    return _PATHS[FALLBACK]


def run(layer: nn.Module, x2d: torch.Tensor, path: KernelPath | None = None) -> torch.Tensor:
    """``layer``'s output for a 2-D input, through ``path`` (default: :func:`select`)."""
    path = path or select(layer, x2d.shape[0], x2d.dtype)
    compute = path.compute_dtype or x2d.dtype
    state = layer.cached(("kernel", path.name, compute), lambda: path.prepare(layer, compute))
    return path.run(layer, state, x2d.to(compute)).to(x2d.dtype)


@contextlib.contextmanager
def force_kernel(model: nn.Module, name: str) -> Iterator[None]:
    """Run every weight-only layer of ``model`` through path ``name`` inside the block.

    Example:
        >>> with force_kernel(qmodel, "reference"):
        ...     y_ref = qmodel(x)
    """
    if name != "auto":
        get_kernel(name)
    layers = [m for m in model.modules() if hasattr(m, "kernel")]
    saved = [m.kernel for m in layers]
    try:
        for m in layers:
            m.kernel = name
        yield
    finally:
        for m, k in zip(layers, saved):
            m.kernel = k


# --- helpers shared by the paths -------------------------------------------------------


def _bias(layer: nn.Module, dtype: torch.dtype) -> torch.Tensor | None:
    return None if layer.bias is None else layer.bias.detach().to(dtype)


def _on_cpu(layer: nn.Module) -> str | None:
    return None if layer.weight_packed.device.type == "cpu" else "it is a CPU kernel"


def _uniform_per_row(layer: nn.Module) -> str | None:
    s = layer.scheme
    if s.codebook is not None:
        return f"it needs uniform codes, not the {s.codebook} codebook"
    if s.granularity == "per_group" or (s.granularity == "per_channel" and s.axis % 2 != 0):
        return "it needs one scale per output channel (per-channel axis 0 or per-tensor)"
    return _on_cpu(layer)


def _row_scale_zero(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-row float32 scale and int32 unsigned zero-point, shape ``(out,)``."""
    n = layer.weight_shape[0]
    return layer.scale.float().expand(n).contiguous(), layer.unsigned_zero_point().expand(n).contiguous()


# --- reference and dense ------------------------------------------------------------------


def _reference_run(layer, state, x):
    return F.linear(x, layer.dequantized_weight(torch.float32), _bias(layer, torch.float32))


def _dense_prepare(layer, dtype):
    return layer.dequantized_weight(dtype), _bias(layer, dtype)


def _dense_run(layer, state, x):
    weight, bias = state
    return F.linear(x, weight, bias)


# --- int4pack: torch._weight_int4pack_mm_for_cpu ----------------------------------------------

INT4_GROUPS = (256, 128, 64, 32)  # group sizes the kernel takes, largest (fewest scales) first


def _int4_group(layer) -> int | None:
    s, (n, k) = layer.scheme, layer.weight_shape
    span = s.group_size if s.granularity == "per_group" else k
    return next((g for g in INT4_GROUPS if span % g == 0 and k % g == 0), None)


def _int4_accepts(layer) -> str | None:
    s = layer.scheme
    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        return "this torch has no _weight_int4pack_mm_for_cpu"
    if s.codebook is not None or s.bits > 4:
        return "it needs uniform codes of at most 4 bits"
    if s.granularity == "per_channel" and s.axis % 2 != 0:
        return "it needs per-channel scales along axis 0"
    if s.granularity == "per_group" and (s.axis % 2 != 1 or layer.weight_shape[1] % s.group_size):
        return "it needs whole groups along in_features"
    if _int4_group(layer) is None:
        return f"it needs groups (or in_features) that are a multiple of {INT4_GROUPS[-1]}"
    return _on_cpu(layer)


def _int4_prepare(layer, dtype):
    n, k = layer.weight_shape
    g = _int4_group(layer)
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


def _int4_run(layer, state, x):
    packed, g, scales_zeros, bias = state
    y = torch._weight_int4pack_mm_for_cpu(x, packed, g, scales_zeros)
    return y if bias is None else y.add_(bias)


# --- int8pack: torch._weight_int8pack_mm -----------------------------------------------------


def _int8_accepts(layer) -> str | None:
    if not hasattr(torch.ops.aten, "_weight_int8pack_mm"):
        return "this torch has no _weight_int8pack_mm"
    return _uniform_per_row(layer)


def _int8_prepare(layer, dtype):
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


def _int8_run(layer, state, x):
    weight, scale, correction, bias = state
    y = torch._weight_int8pack_mm(x, weight, scale)
    if correction is not None:
        y = y + x.sum(-1, keepdim=True) * correction
    return y if bias is None else y.add_(bias)


# --- fbgemm / x86 dynamic int8 (W8A8) -------------------------------------------------------


def _fbgemm_accepts(layer) -> str | None:
    if torch.backends.quantized.engine not in ("x86", "fbgemm"):
        return f"the quantized engine is {torch.backends.quantized.engine!r}, not x86/fbgemm"
    return _uniform_per_row(layer)


def _fbgemm_prepare(layer, dtype):
    scale, zero = _row_scale_zero(layer)
    codes = (layer.unsigned_codes().to(torch.int32) - 128).to(torch.int8)  # u - 128 in int8
    with warnings.catch_warnings():  # quantized dtypes are deprecated upstream, still the API
        warnings.simplefilter("ignore")
        qweight = torch._make_per_channel_quantized_tensor(
            codes, scale.double(), (zero - 128).long(), 0)
        return torch.ops.quantized.linear_prepack(qweight, _bias(layer, torch.float32))


def _fbgemm_run(layer, state, x):
    return torch.ops.quantized.linear_dynamic(x, state, True)


# --- registry ------------------------------------------------------------------------------

register_kernel(KernelPath("reference", lambda layer: None, lambda layer, dtype: None, _reference_run,
                           compute_dtype=torch.float32, priority=100))
register_kernel(KernelPath("dense", lambda layer: None, _dense_prepare, _dense_run,
                           priority=90, rtol=1e-6))
register_kernel(KernelPath("dense_bf16", lambda layer: None, _dense_prepare, _dense_run,
                           compute_dtype=torch.bfloat16, priority=80, rtol=2e-2))
register_kernel(KernelPath("int4pack", _int4_accepts, _int4_prepare, _int4_run,
                           compute_dtype=torch.bfloat16, priority=10, rtol=2e-2,
                           cases=(Case(bits=(1, 2, 3, 4), tokens=(1, 16)),)))
register_kernel(KernelPath("int8pack", _int8_accepts, _int8_prepare, _int8_run,
                           compute_dtype=torch.bfloat16, priority=20, rtol=2e-2,
                           cases=(Case(tokens=(1, 16), dtypes=(torch.bfloat16,)),)))
register_kernel(KernelPath("fbgemm", _fbgemm_accepts, lambda layer, dtype: _fbgemm_prepare(layer, dtype),
                           _fbgemm_run, compute_dtype=torch.float32, priority=30, rtol=6e-2,
                           cases=(Case(dtypes=(torch.float32,)),)))
