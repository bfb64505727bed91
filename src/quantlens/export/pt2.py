"""``format="pt2"``: a ``torch.export`` program saved with ``torch.export.save``.

Each quantized layer is swapped for an export form built from plain tensor ops that keeps
the packed integer buffers (so the file keeps the bits) and dequantizes them inside the
program; the file then loads with ``torch.export.load`` and runs with PyTorch alone, no
quantlens needed:

==============  ====================================================================
QLinear         unpack the codes (shift / mask on uint8, 1/2/4/8 bits), ``(q - z) * s``
                per block (or the codebook lookup), ``F.linear`` (after dividing the input
                by the layer's ``input_scale``, where it has one)
QConv2d         the same, ``F.conv2d``
QEmbedding      the same on the table, ``F.embedding``
DynamicLinear   the input divided by ``input_scale`` (if any), the per-token 7-bit
                activation rounding and the int8 weight in the
                program (the ``reference`` kernel path: same quantized values, float
                GEMM); float16 weights: cast, ``F.linear``
==============  ====================================================================

PyTorch's own int8 modules (Static, QAT, dynamic LSTM/GRU) hold quantized tensors, which
torch.export does not take: those models are refused with the layer's name (use
``format="onnx"`` or ``"torchscript"``). Tested on torch 2.13.0.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from quantlens.core.codebooks import lookup
from quantlens.core.layout import from_blocks, to_blocks
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError, error_line
from quantlens.export.inputs import ExampleInputs, Flat
from quantlens.export.onnx_int8 import is_torch_quantized
from quantlens.nn.dynamic_linear import ACT_LEVELS, DynamicLinear, quantize_activations
from quantlens.nn.dynamic_rnn import DynamicRNN
from quantlens.nn.input_scale import BUFFER, input_scale_of, scale_input
from quantlens.nn.packed import PackedWeight
from quantlens.nn.qconv import QConv2d
from quantlens.nn.qembedding import QEmbedding
from quantlens.nn.qlinear import QLinear


def _cloned(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach().clone()


class PackedExport(nn.Module):
    """A weight-only layer's packed weight, dequantized with tensor ops in ``weight()``."""

    def __init__(self, layer: PackedWeight, name: str) -> None:
        super().__init__()
        s = layer.scheme
        if 8 % s.bits:
            raise InputError(
                f"layer {name!r} has {s.bits}-bit codes; pt2 export unpacks 1/2/4/8-bit codes"
            )
        self.scheme: QScheme = s
        self.shape = tuple(layer.weight_shape)
        self.register_buffer("weight_packed", layer.weight_packed.clone())
        self.register_buffer("scale", layer.scale.float().clone())
        self.register_buffer("zero_point", layer.unsigned_zero_point().to(torch.uint8))
        self.register_buffer(
            "codebook", None if layer.codebook is None else layer.codebook.float().clone()
        )
        self.register_buffer("shifts", torch.arange(8 // s.bits, dtype=torch.uint8) * s.bits)

    def weight(self) -> torch.Tensor:
        s, numel = self.scheme, 1
        for d in self.shape:
            numel *= d
        codes = (self.weight_packed.unsqueeze(-1) >> self.shifts) & (
            (1 << s.bits) - 1
        )  # (bytes, per)
        codes = codes.reshape(-1)[:numel].reshape(self.shape)
        blocks = to_blocks(codes, s)
        if self.codebook is not None:
            x = lookup(blocks, self.codebook) * self.scale.unsqueeze(-1)
        else:
            x = (blocks.float() - self.zero_point.float().unsqueeze(-1)) * self.scale.unsqueeze(-1)
        return from_blocks(x, s, torch.Size(self.shape))


class LinearExport(PackedExport):
    def __init__(self, layer: QLinear, name: str) -> None:
        super().__init__(layer, name)
        self.register_buffer(
            "bias", None if layer.bias is None else layer.bias.detach().float().clone()
        )
        self.register_buffer(BUFFER, _cloned(input_scale_of(layer)))

    def forward(self, x):
        return F.linear(
            scale_input(self, x),
            self.weight().to(x.dtype),
            None if self.bias is None else self.bias.to(x.dtype),
        )


class ConvExport(PackedExport):
    def __init__(self, layer: QConv2d, name: str) -> None:
        super().__init__(layer, name)
        self.register_buffer(
            "bias", None if layer.bias is None else layer.bias.detach().float().clone()
        )
        self.stride, self.padding, self.dilation, self.groups = (
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
        )

    def forward(self, x):
        return F.conv2d(
            x.float(),
            self.weight(),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        ).to(x.dtype)


class EmbeddingExport(PackedExport):
    def __init__(self, layer: QEmbedding, name: str) -> None:
        super().__init__(layer, name)
        self.out_dtype = layer.dtype

    def forward(self, ids):
        return F.embedding(ids, self.weight()).to(self.out_dtype)


class DynamicLinearExport(nn.Module):
    """DynamicLinear's ``reference`` path: the same codes, a float GEMM."""

    def __init__(self, layer: DynamicLinear, name: str) -> None:
        super().__init__()
        self.dtype, self.per_token = layer.dtype, layer.per_token
        self.register_buffer("weight", layer.weight.clone())
        self.register_buffer(
            "weight_scale", layer.weight_scale.clone() if layer.dtype == "int8" else None
        )
        self.register_buffer("bias", None if layer.bias is None else layer.bias.clone())
        self.register_buffer(BUFFER, _cloned(input_scale_of(layer)))

    def forward(self, x):
        if self.dtype != "int8":
            return F.linear(scale_input(self, x), self.weight.to(x.dtype), self.bias)
        x2d = scale_input(self, x.reshape(-1, x.shape[-1]).float())
        xs, s, z = quantize_activations(x2d, self.per_token)
        q = xs.round().clamp(0, ACT_LEVELS)
        w = self.weight.float() * self.weight_scale[:, None]
        y = F.linear((q - z) * s, w, self.bias)
        return y.reshape(*x.shape[:-1], -1).to(x.dtype)


_FORMS = {
    QLinear: LinearExport,
    QConv2d: ConvExport,
    QEmbedding: EmbeddingExport,
    DynamicLinear: DynamicLinearExport,
}


def _swap_tree(model: nn.Module) -> nn.Module:
    def visit(module: nn.Module, prefix: str) -> nn.Module:
        form = _FORMS.get(type(module))
        name = prefix.rstrip(".") or "(root)"
        if form is not None:
            return form(module, name)
        if is_torch_quantized(module) or isinstance(module, DynamicRNN):
            raise InputError(
                f"layer {name!r} ({type(module).__name__}) runs on PyTorch's int8 kernels, which "
                "torch.export cannot hold; export it with format='onnx' or 'torchscript'"
            )
        for child_name, child in list(module.named_children()):
            setattr(module, child_name, visit(child, f"{prefix}{child_name}."))
        return module

    return visit(model, "")


def write(model: nn.Module, path: str | os.PathLike, inputs: ExampleInputs) -> Path:
    """Export ``model`` with torch.export and save it (see :func:`quantlens.export.export`)."""
    if isinstance(model, torch.fx.GraphModule) and any(
        n.op == "call_function" and n.target is torch.quantize_per_tensor for n in model.graph.nodes
    ):
        raise InputError(
            "Static/QAT int8 models hold quantized tensors, which torch.export cannot hold; "
            "export them with format='onnx' or 'torchscript'"
        )
    target = _swap_tree(copy.deepcopy(model).eval())
    flat = Flat(target, inputs).eval()
    dims = tuple(
        {i: torch.export.Dim.AUTO for i in axes} for axes in inputs.dynamic_axes().values()
    )
    try:
        with torch.no_grad():
            program = torch.export.export(
                flat, tuple(inputs.tensors), dynamic_shapes=(dims,)
            )  # (*tensors)
    except Exception as exc:
        raise InputError(
            f"torch.export could not capture this model ({type(exc).__name__}: "
            f"{error_line(exc, 200)}); check example_inputs"
        ) from exc
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(
            f"cannot write {path}: the folder {path.parent} does not exist; create it first"
        )
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.export.save(program, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
