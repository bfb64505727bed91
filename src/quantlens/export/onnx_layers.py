"""ONNX subgraphs of the weight-only and dynamic int8 layers (see :mod:`.onnx_graph`).

=================  ===========================================================================
layer              ONNX form
=================  ===========================================================================
QLinear            ONNX Runtime's ``MatMulNBits`` (com.microsoft; 2/4/8-bit codes packed per
                   block of a power-of-two size >= 16, one scale and zero-point per block;
                   per-channel scales are repeated per block) -- or, with
                   ``weight_op="dequantize"`` and for schemes MatMulNBits cannot hold, a
                   (blocked, opset 21) ``DequantizeLinear`` of the codes (UINT4 up to 4 bits,
                   else UINT8) feeding ``MatMul``
QConv2d            ``DequantizeLinear`` (per channel, or blocked along the group axis) -> ``Conv``
QEmbedding         ``Gather`` of the packed rows, unpacked with ``BitShift`` / ``BitwiseAnd``,
                   then ``(code - zero_point) * scale`` per row or group
DynamicLinear      per-token (or per-tensor) 7-bit asymmetric activations computed in the
                   graph (``ReduceMin`` / ``ReduceMax`` per row -> scale, zero-point ->
                   ``Round`` / ``Clip``), ``MatMulInteger`` (uint8 x int8 -> int32) and the
                   same rescale as the quantlens kernels: ``s * (ws * acc - z * c) + b``;
                   float16 weights -> ``Cast`` + ``MatMul``
=================  ===========================================================================

A QLinear or DynamicLinear with an ``input_scale`` (AWQ / SmoothQuant, where the scale could
not be folded) gets a ``Div`` of its input by that ``(K,)`` constant in front.

Codebook schemes (NF4, k-means, log2) have no ONNX integer form and are refused with the
layer's name.

Why ``weight_op="auto"`` writes ``MatMulNBits`` (measured, benchmarks/onnx_export.py):
ONNX Runtime 1.32 rewrites ``DequantizeLinear -> MatMul`` into its own MatMulNBits at
accuracy level 4, which rounds the activations to int8: on MiniLM w4 g128 that form ran
about 10% faster but its mean embedding cosine against the quantlens model fell from
0.99999 to 0.9991. The explicit node leaves ``accuracy_level`` unset (float32 activations),
which is what weight-only quantization promises; ``"dequantize"`` is there for runtimes
without the com.microsoft operators.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import torch

from quantlens.errors import InputError
from quantlens.export.onnx_graph import MS_DOMAIN, LayerInfo, OnnxBuilder, register_onnx_layer
from quantlens.nn.dynamic_linear import ACT_LEVELS, DynamicLinear
from quantlens.nn.input_scale import input_scale_of
from quantlens.nn.packed import PackedWeight
from quantlens.nn.qconv import QConv2d
from quantlens.nn.qembedding import QEmbedding
from quantlens.nn.qlinear import QLinear

WeightOp = Literal["auto", "matmulnbits", "dequantize"]
"""The ONNX form of a weight-only Linear: MatMulNBits where it fits, or always one form."""
WEIGHT_OPS: tuple[str, ...] = get_args(WeightOp)
NBITS = (2, 4, 8)  # what MatMulNBits runs in ONNX Runtime 1.32
_EPS = 1e-12


def pack_lsb(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned ``codes`` along the last axis, ``8 // bits`` per byte, first code in the
    lowest bits (the layout of ``MatMulNBits`` and of ONNX INT4/UINT4). The last axis must
    be a multiple of ``8 // bits``."""
    per = 8 // bits
    c = codes.astype(np.uint16).reshape(*codes.shape[:-1], -1, per)
    return (c << (np.arange(per, dtype=np.uint16) * bits)).sum(-1).astype(np.uint8)


def _pad_last(a: np.ndarray, multiple: int, value=0) -> np.ndarray:
    extra = (-a.shape[-1]) % multiple
    if not extra:
        return a
    return np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, extra)], constant_values=value)


def _refuse_codebook(module: PackedWeight, info: LayerInfo) -> None:
    if module.scheme.codebook is not None:
        raise InputError(
            f"layer {info.name!r} uses the {module.scheme.codebook} codebook, which has no ONNX "
            "integer form; quantize it with a uniform scheme for ONNX, skip it, or export with "
            "format='pt2'"
        )


def _params(module: PackedWeight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unsigned codes (weight shape), float32 scales and uint8 zero-points (layout shape)."""
    codes = module.unsigned_codes().numpy()
    scale = module.scale.float().numpy()
    zp = module.unsigned_zero_point().numpy()
    return codes, scale, zp.astype(np.uint8)


def _scaled_input(module, b: OnnxBuilder, x: str) -> str:
    """``x`` divided by the layer's ``input_scale`` (a ``Div`` node), or ``x`` without one."""
    scale = input_scale_of(module)
    return x if scale is None else b.op("Div", [x, b.const("input_scale", scale.float())])


# --- QLinear -----------------------------------------------------------------------------------


def _nbits_layout(module: QLinear) -> tuple[int, np.ndarray, np.ndarray] | None:
    """``(block, scale (N, n_blocks), zero_point (N, n_blocks))`` for MatMulNBits, or None."""
    s, n, k = module.scheme, module.out_features, module.in_features
    if s.bits not in NBITS:
        return None
    scale, zp = module.scale.float().numpy(), module.unsigned_zero_point().numpy().astype(np.uint8)
    if s.granularity == "per_group":
        if s.axis % 2 != 1:
            return None
        block = next((b for b in (256, 128, 64, 32, 16) if s.group_size % b == 0), None)
        if block is None:
            return None
        reps = s.group_size // block
        nb = math.ceil(k / block)
        return block, np.repeat(scale, reps, axis=1)[:, :nb], np.repeat(zp, reps, axis=1)[:, :nb]
    block = min(128, max(16, 1 << (k - 1).bit_length()))
    nb = math.ceil(k / block)
    scale = np.broadcast_to(scale.reshape(-1, 1) if scale.ndim else scale, (n, nb))
    zp = np.broadcast_to(zp.reshape(-1, 1) if zp.ndim else zp, (n, nb))
    return block, np.ascontiguousarray(scale), np.ascontiguousarray(zp)


def _matmul_nbits(module: QLinear, b: OnnxBuilder, x: str, layout) -> str:
    block, scale, zp = layout
    bits, n, k = module.scheme.bits, module.out_features, module.in_features
    nb = scale.shape[1]
    codes = _pad_last(module.unsigned_codes().numpy(), nb * block)  # (N, nb * block)
    packed = pack_lsb(codes.reshape(n, nb, block), bits)  # (N, nb, block * bits / 8)
    zp_packed = pack_lsb(_pad_last(zp, 8 // bits), bits).reshape(-1) if bits < 8 else zp.reshape(-1)
    inputs = [
        x,
        b.const("weight_packed", packed),
        b.const("scales", scale.reshape(-1)),
        b.const("zero_points", zp_packed),
    ]
    return b.op("MatMulNBits", inputs, domain=MS_DOMAIN, K=k, N=n, bits=bits, block_size=block)


def dequantize_node(
    b: OnnxBuilder,
    hint: str,
    codes: np.ndarray,
    scale: np.ndarray,
    zp: np.ndarray,
    bits: int,
    axis: int | None,
    block: int | None,
) -> str:
    """``DequantizeLinear`` of unsigned ``codes``: UINT4 (packed, opset 21) up to 4 bits, else
    UINT8. ``axis``/``block``: per-channel (``block=None``) or blocked (opset 21) along ``axis``;
    ``axis=None``: per-tensor."""
    from onnx import TensorProto

    attrs = {} if axis is None else {"axis": axis}
    if block is not None:
        attrs["block_size"] = block
        b.opset = max(b.opset, 21)
    if bits <= 4:
        b.opset = max(b.opset, 21)
        flat = _pad_last(codes.reshape(-1), 2)
        name = b.const_packed(hint, TensorProto.UINT4, codes.shape, pack_lsb(flat, 4).tobytes())
        zflat = _pad_last(zp.reshape(-1), 2)
        zname = b.const_packed(
            f"{hint}_zero_point", TensorProto.UINT4, zp.shape, pack_lsb(zflat, 4).tobytes()
        )
    else:
        name, zname = b.const(hint, codes.astype(np.uint8)), b.const(f"{hint}_zero_point", zp)
    return b.op(
        "DequantizeLinear",
        [name, b.const(f"{hint}_scale", scale.astype(np.float32)), zname],
        **attrs,
    )


def _dequantize_matmul(module: QLinear, b: OnnxBuilder, x: str) -> str:
    s = module.scheme
    codes, scale, zp = _params(module)
    if s.granularity == "per_group":
        if s.axis % 2 == 1:  # groups along K: the transposed (K, N) weight is blocked along axis 0
            w = dequantize_node(b, "weight", codes.T, scale.T, zp.T, s.bits, 0, s.group_size)
        else:  # groups along N: the layout is already (K, groups)
            w = dequantize_node(b, "weight", codes.T, scale, zp, s.bits, 1, s.group_size)
    elif s.granularity == "per_channel":
        w = dequantize_node(b, "weight", codes.T, scale, zp, s.bits, 1, None)
    else:
        w = dequantize_node(b, "weight", codes.T, scale, zp, s.bits, None, None)
    return b.op("MatMul", [x, w])


@register_onnx_layer(QLinear)
def _qlinear(module: QLinear, b: OnnxBuilder, x: str, y: str, info: LayerInfo) -> None:
    _refuse_codebook(module, info)
    x = _scaled_input(module, b, x)
    op = info.extra.get("weight_op", "auto")
    layout = _nbits_layout(module) if op != "dequantize" else None
    if op == "matmulnbits" and layout is None:
        raise InputError(
            f"layer {info.name!r} ({module.scheme.describe()}) has no MatMulNBits form "
            "(2/4/8 bits, groups along the input features); use weight_op='auto'"
        )
    out = (
        _matmul_nbits(module, b, x, layout)
        if layout is not None
        else _dequantize_matmul(module, b, x)
    )
    if module.bias is not None:
        b.op("Add", [out, b.const("bias", module.bias.detach().float())], out=y)
    else:
        b.op("Identity", [out], out=y)


# --- QConv2d -----------------------------------------------------------------------------------


@register_onnx_layer(QConv2d)
def _qconv(module: QConv2d, b: OnnxBuilder, x: str, y: str, info: LayerInfo) -> None:
    _refuse_codebook(module, info)
    if isinstance(module.padding, str):
        raise InputError(
            f"layer {info.name!r} uses padding={module.padding!r}; ONNX export needs numeric "
            "padding"
        )
    s = module.scheme
    codes, scale, zp = _params(module)
    if s.granularity == "per_group":
        axis = s.axis % codes.ndim
        w = dequantize_node(
            b,
            "weight",
            codes,
            np.moveaxis(scale, -1, axis),
            np.moveaxis(zp, -1, axis),
            s.bits,
            axis,
            s.group_size,
        )
    elif s.granularity == "per_channel":
        w = dequantize_node(b, "weight", codes, scale, zp, s.bits, s.axis % codes.ndim, None)
    else:
        w = dequantize_node(b, "weight", codes, scale, zp, s.bits, None, None)
    inputs = [x, w] + (
        [b.const("bias", module.bias.detach().float())] if module.bias is not None else []
    )
    ph, pw = module.padding
    b.op(
        "Conv",
        inputs,
        out=y,
        strides=list(module.stride),
        pads=[ph, pw, ph, pw],
        dilations=list(module.dilation),
        group=module.groups,
        kernel_shape=list(module.kernel_size),
    )


# --- QEmbedding --------------------------------------------------------------------------------


@register_onnx_layer(QEmbedding)
def _qembedding(module: QEmbedding, b: OnnxBuilder, x: str, y: str, info: LayerInfo) -> None:
    _refuse_codebook(module, info)
    s, v, d = module.scheme, module.num_embeddings, module.embedding_dim
    rank = len(info.in_shape)
    keep = [0] * rank  # Reshape: 0 copies the index dims
    if 8 % s.bits == 0 and (d * s.bits) % 8 == 0:
        table = b.const("weight_packed", module.weight_packed.numpy().reshape(v, d * s.bits // 8))
        rows = b.op("Gather", [table, x], axis=0)  # (..., d * bits / 8) uint8
        if s.bits < 8:
            per = 8 // s.bits
            shifts = b.const("shifts", (np.arange(per) * s.bits).astype(np.uint8))
            mask = b.const("mask", np.array((1 << s.bits) - 1, dtype=np.uint8))
            u = b.op("Unsqueeze", [rows, b.const("axes", np.array([-1], dtype=np.int64))])
            u = b.op("BitwiseAnd", [b.op("BitShift", [u, shifts], direction="RIGHT"), mask])
            rows = b.op("Reshape", [u, b.const("shape", np.array(keep + [d], dtype=np.int64))])
    else:  # codes that straddle bytes: one byte per code
        rows = b.op("Gather", [b.const("codes", module.unsigned_codes().numpy()), x], axis=0)
    codes = b.op("Cast", [rows], to=1)  # FLOAT
    scale = module.scale.float().numpy()
    zp = module.unsigned_zero_point().numpy().astype(np.uint8)
    unsqueeze = b.const("last", np.array([-1], dtype=np.int64))

    def per_row(table: np.ndarray, hint: str) -> str:
        g = b.op("Gather", [b.const(hint, table), x], axis=0)
        return b.op(
            "Unsqueeze", [b.op("Cast", [g], to=1) if table.dtype != np.float32 else g, unsqueeze]
        )

    if s.granularity == "per_tensor":
        out = b.op(
            "Mul",
            [
                b.op("Sub", [codes, b.const("zero_point", zp.astype(np.float32))]),
                b.const("scale", scale),
            ],
        )
        b.op("Identity", [out], out=y)
        return
    if s.granularity == "per_group":
        if d % s.group_size:
            raise InputError(
                f"layer {info.name!r}: group_size {s.group_size} does not divide {d}; "
                "ONNX export needs whole groups"
            )
        grouped = [0] * rank + [d // s.group_size, s.group_size]
        codes = b.op("Reshape", [codes, b.const("grouped", np.array(grouped, dtype=np.int64))])
    out = b.op("Mul", [b.op("Sub", [codes, per_row(zp, "zero_point")]), per_row(scale, "scale")])
    b.op("Reshape", [out, b.const("shape_out", np.array(keep + [d], dtype=np.int64))], out=y)


# --- DynamicLinear -----------------------------------------------------------------------------


@register_onnx_layer(DynamicLinear)
def _dynamic_linear(module: DynamicLinear, b: OnnxBuilder, x: str, y: str, info: LayerInfo) -> None:
    from onnx import TensorProto

    x = _scaled_input(module, b, x)
    bias = [b.const("bias", module.bias.float())] if module.bias is not None else []
    if module.dtype == "float16":
        w = b.op("Cast", [b.const("weight", module.weight.t().contiguous())], to=TensorProto.FLOAT)
        out = b.op("MatMul", [x, w])
        b.op("Add" if bias else "Identity", [out, *bias], out=y)
        return
    f32 = lambda v: np.array(v, dtype=np.float32)
    zero = b.const("zero", f32(0.0))
    reduce = {"keepdims": 1}
    axes = [b.const("axes", np.array([-1], dtype=np.int64))] if module.per_token else []
    if not module.per_token:
        reduce["keepdims"] = 0
    lo = b.op("Min", [b.op("ReduceMin", [x, *axes], **reduce), zero])  # (..., 1): the range holds 0
    hi = b.op("Max", [b.op("ReduceMax", [x, *axes], **reduce), zero])
    s = b.op(
        "Max",
        [
            b.op("Div", [b.op("Sub", [hi, lo]), b.const("steps", f32(ACT_LEVELS - 1))]),
            b.const("eps", f32(_EPS)),
        ],
    )
    inv = b.op("Div", [b.const("one", f32(1.0)), s])
    z = b.op("Round", [b.op("Mul", [b.op("Neg", [lo]), inv])])
    xs = b.op("Add", [b.op("Mul", [x, inv]), z])
    q = b.op(
        "Cast",
        [b.op("Clip", [b.op("Round", [xs]), zero, b.const("qmax", f32(ACT_LEVELS))])],
        to=TensorProto.UINT8,
    )
    acc = b.op(
        "MatMulInteger", [q, b.const("weight", module.weight.t().contiguous())]
    )  # int32 (..., N)
    ws = module.weight_scale.float()
    c = (ws * module.weight.sum(dim=1, dtype=torch.int32).float()).numpy()  # (N,) ws * rowsum(Wq)
    g = b.op(
        "Sub",
        [
            b.op("Mul", [b.op("Cast", [acc], to=TensorProto.FLOAT), b.const("weight_scale", ws)]),
            b.op("Mul", [z, b.const("weight_rowsum", c)]),
        ],
    )
    out = b.op("Mul", [g, s])
    b.op("Add" if bias else "Identity", [out, *bias], out=y)
