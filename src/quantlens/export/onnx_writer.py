"""``format="onnx"``: prepare the model, trace its float skeleton, write the quantized layers.

See :mod:`quantlens.export.onnx_graph` for the mechanism, :mod:`.onnx_layers` and
:mod:`.onnx_int8` for the layers.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from quantlens.errors import InputError, error_line, require
from quantlens.export import onnx_int8, onnx_layers
from quantlens.export.inputs import ExampleInputs, Flat, flatten_outputs
from quantlens.export.onnx_graph import (
    LayerInfo,
    LayerMark,
    Session,
    builder_for,
    check_model,
    mark,
    rewrite_marks,
    save_model,
    trace_to_onnx,
)
from quantlens.methods.backends.torch_ao.int8_modules import observer_types
from quantlens.nn.dynamic_linear import DynamicLinear
from quantlens.nn.dynamic_rnn import DynamicRNN
from quantlens.nn.packed import PackedWeight


def _quantized_kind(module: nn.Module) -> str | None:
    """Why ``module`` is a quantized layer that needs a builder, or None for float layers."""
    if onnx_int8.is_torch_quantized(module):
        return "a PyTorch int8 module"
    if isinstance(module, (PackedWeight, DynamicLinear, DynamicRNN)):
        return "a quantlens quantized layer"
    if type(module).__name__.endswith(("FakeQuantize", "Observer")) or isinstance(
        module, observer_types()
    ):
        return "a fake-quantization / observer module (call ql.convert first)"
    return None


def mark_layers(
    model: nn.Module, session: Session, weight_op: str, int8_inputs: dict | None = None
) -> nn.Module:
    """Swap every layer with an ONNX builder for its marker; refuse quantized layers without.

    ``int8_inputs``: input qparams of eager-mode int8 layers (:func:`onnx_int8.record_int8_inputs`).
    """

    def swap(module: nn.Module, name: str) -> nn.Module | None:
        if isinstance(module, LayerMark):
            return None
        eager = onnx_int8.eager_replacement(module, name, int8_inputs or {}, session)
        if eager is not None:
            return eager
        if builder_for(module) is not None:
            return mark(module, LayerInfo(name, extra={"weight_op": weight_op}), session)
        kind = _quantized_kind(module)
        if kind is not None:
            raise InputError(
                f"layer {name or '(root)'!r} ({type(module).__name__}, {kind}) has no ONNX form "
                "here; skip it when quantizing, or export with format='torchscript'"
            )
        return None

    def visit(parent: nn.Module, prefix: str) -> None:
        for child_name, child in list(parent.named_children()):
            full = f"{prefix}{child_name}"
            new = swap(child, full)
            if new is not None:
                setattr(parent, child_name, new)
            elif not isinstance(child, LayerMark):
                visit(child, f"{full}.")

    root = swap(model, "")
    if root is not None:
        return root
    visit(model, "")
    return model


def write(
    model: nn.Module, path: str | os.PathLike, inputs: ExampleInputs, *, weight_op: str = "auto"
) -> Path:
    """Write ``model`` as an ONNX file (see :func:`quantlens.export.export`)."""
    require("onnx", "onnx")
    if weight_op not in onnx_layers.WEIGHT_OPS:
        raise InputError(
            f"unknown weight_op {weight_op!r}; choose one of {', '.join(onnx_layers.WEIGHT_OPS)}"
        )
    if getattr(model, "quantlens_prepared", None) is not None:
        raise InputError(
            "this model is prepared for calibration/QAT, not converted; call ql.convert(model) "
            "first"
        )
    target = copy.deepcopy(model).eval()
    session = Session()
    args = inputs.tensors if not inputs.keyword else ()
    kwargs = dict(zip(inputs.names, inputs.tensors)) if inputs.keyword else {}
    if onnx_int8.has_int8_graph(target):
        target = onnx_int8.rewrite(target, args, kwargs, session)
        int8_inputs = {}
    else:
        int8_inputs = onnx_int8.record_int8_inputs(
            target, lambda: inputs.call(target, inputs.tensors)
        )
    target = mark_layers(target, session, weight_op, int8_inputs)
    with torch.no_grad():
        out_names, outs = flatten_outputs(inputs.call(target, inputs.tensors))
    axes = inputs.dynamic_axes()
    for name, t in zip(out_names, outs):
        axes[name] = {0: "batch"} if t.ndim else {}
        if inputs.has_sequence and t.ndim >= 3:
            axes[name][1] = "sequence"
    try:
        proto = trace_to_onnx(Flat(target, inputs), inputs.tensors, inputs.names, out_names, axes)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"the ONNX exporter could not trace this model ({type(exc).__name__}: "
            f"{error_line(exc, 200)}); check example_inputs"
        ) from exc
    rewrite_marks(proto, session)
    check_model(proto)
    return save_model(proto, path)
