"""Static and QAT int8 models as ONNX QDQ graphs, in the layout of ONNX Runtime's
``quantize_static`` (QuantFormat.QDQ): every int8 tensor of the PyTorch model becomes a
``QuantizeLinear`` -> ``DequantizeLinear`` pair with the model's own scale and zero-point,
weights are int8 initializers behind a per-channel ``DequantizeLinear`` (axis 0), biases
int32 with scale ``input_scale * weight_scale``. ONNX Runtime fuses ``DQ -> Conv/Gemm/MatMul
-> Q`` into its int8 kernels (QLinearConv, QGemm, ...).

A converted Static/QAT model is a torch.fx graph whose values are quantized tensors. It is
rewritten into a float graph computing the same numbers: each int8 value is held as its
dequantized float, ``quantize_per_tensor`` becomes a Q/DQ pair, ``dequantize`` vanishes,
every int8 module becomes a :class:`~quantlens.export.onnx_graph.LayerMark` (its builder
writes DQ(weight) -> Conv/Gemm -> Q -> DQ), quantized functional ops (``add``, ``add_relu``,
``cat``, ``mul``) their float op and a Q/DQ pair, and any other op that produced an int8
value (ReLU, pooling, flatten) keeps its float form followed by a Q/DQ pair on the recorded
output parameters. A quantized op or module with no ONNX form here is refused by name.

The qparams come from one run of the model on the example inputs (torch.fx Interpreter).
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from quantlens.errors import InputError
from quantlens.export.onnx_graph import LayerInfo, OnnxBuilder, Session, mark, register_onnx_layer
from quantlens.methods.backends.torch_ao.fx import is_quantized_module
from quantlens.methods.backends.torch_ao.int8_modules import int8_layer_kinds, quant_stub_types


def is_torch_quantized(module: nn.Module) -> bool:
    """True for modules of PyTorch's int8 kernels (static, dynamic, intrinsic)."""
    return is_quantized_module(module)


# float equivalents of the quantized functional ops: target -> (fn, number of tensor args,
# whether a ReLU follows). A ReLU before a Q whose zero-point is the type's minimum is left
# out, as quantize_static does: the Q clamps at zero already, and ONNX Runtime fuses
# DQ -> Add -> Q into QLinearAdd only without it.
_FUNCTIONAL = {
    torch.ops.quantized.add: (operator.add, 2, False),
    torch.ops.quantized.add_relu: (operator.add, 2, True),
    torch.ops.quantized.mul: (operator.mul, 2, False),
    torch.ops.quantized.mul_relu: (operator.mul, 2, True),
}


def relu_is_implied(zero_point: int, dtype: torch.dtype) -> bool:
    """Whether quantizing to ``(zero_point, dtype)`` clamps negatives to zero by itself."""
    return zero_point == (0 if dtype == torch.quint8 else -128)


class QDQ(nn.Module):
    """``quantize_per_tensor`` then ``dequantize`` with fixed parameters (a Q/DQ pair in ONNX)."""

    def __init__(self, scale: float, zero_point: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.scale, self.zero_point, self.dtype = float(scale), int(zero_point), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.quantize_per_tensor(x, self.scale, self.zero_point, self.dtype).dequantize()


class Int8Layer(nn.Module):
    """A PyTorch int8 module taking and returning the float values of its int8 tensors."""

    def __init__(
        self, module: nn.Module, scale: float, zero_point: int, dtype: torch.dtype
    ) -> None:
        super().__init__()
        self.module, self.input_qdq = module, QDQ(scale, zero_point, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.quantize_per_tensor(
            x, self.input_qdq.scale, self.input_qdq.zero_point, self.input_qdq.dtype
        )
        return self.module(q).dequantize()


def _onnx_zp(zero_point: int, dtype: torch.dtype) -> np.ndarray:
    if dtype == torch.quint8:
        return np.array(zero_point, dtype=np.uint8)
    if dtype == torch.qint8:
        return np.array(zero_point, dtype=np.int8)
    raise InputError(f"int8 export handles quint8/qint8 tensors, not {dtype}")


def _qdq(
    b: OnnxBuilder, x: str, scale: float, zero_point: int, dtype: torch.dtype, y: str | None = None
) -> str:
    s = b.const("scale", np.array(scale, dtype=np.float32))
    z = b.const("zero_point", _onnx_zp(zero_point, dtype))
    return b.op("DequantizeLinear", [b.op("QuantizeLinear", [x, s, z]), s, z], out=y)


@register_onnx_layer(QDQ)
def _build_qdq(module: QDQ, b: OnnxBuilder, x: str, y: str, info: LayerInfo) -> None:
    _qdq(b, x, module.scale, module.zero_point, module.dtype, y)


def _weight(b: OnnxBuilder, w: torch.Tensor, axis_for_channels: int) -> tuple[str, np.ndarray]:
    """DQ of an int8 torch weight; returns the node output and the per-channel scales."""
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        scale = w.q_per_channel_scales().float().numpy()
        zp = w.q_per_channel_zero_points().numpy().astype(np.int8)
        attrs = {"axis": axis_for_channels}
    else:
        scale = np.array(w.q_scale(), dtype=np.float32)
        zp = np.array(w.q_zero_point(), dtype=np.int8)
        attrs = {}
    ints = w.int_repr().numpy()
    if axis_for_channels == 1:  # (N, K) -> (K, N) for MatMul
        ints = np.ascontiguousarray(ints.T)
    out = b.op(
        "DequantizeLinear",
        [b.const("weight", ints), b.const("weight_scale", scale), b.const("weight_zero_point", zp)],
        **attrs,
    )
    return out, scale


def _bias(
    b: OnnxBuilder, bias: torch.Tensor | None, in_scale: float, w_scale: np.ndarray
) -> list[str]:
    if bias is None:
        return []
    scale = (np.float32(in_scale) * w_scale).astype(np.float32)
    q = np.round(bias.detach().float().numpy() / scale).astype(np.int32)
    attrs = {"axis": 0} if scale.ndim else {}
    zp = np.zeros(scale.shape, dtype=np.int32)
    return [
        b.op(
            "DequantizeLinear",
            [b.const("bias", q), b.const("bias_scale", scale), b.const("bias_zero_point", zp)],
            **attrs,
        )
    ]


def _finish(b: OnnxBuilder, out: str, module: nn.Module, relu: bool, y: str) -> None:
    if relu and not relu_is_implied(int(module.zero_point), torch.quint8):
        out = b.op("Relu", [out])
    _qdq(b, out, float(module.scale), int(module.zero_point), torch.quint8, y)


def _conv(layer: Int8Layer, b: OnnxBuilder, x: str, y: str, info: LayerInfo, relu: bool) -> None:
    m = layer.module
    if getattr(m, "padding_mode", "zeros") != "zeros" or isinstance(m.padding, str):
        raise InputError(
            f"layer {info.name!r}: int8 ONNX export needs zero padding given as numbers"
        )
    w, w_scale = _weight(b, m.weight(), 0)
    inputs = [x, w, *_bias(b, m.bias(), layer.input_qdq.scale, w_scale)]
    pads = list(m.padding) * 2
    out = b.op(
        "Conv",
        inputs,
        strides=list(m.stride),
        pads=pads,
        dilations=list(m.dilation),
        group=m.groups,
        kernel_shape=list(m.kernel_size),
    )
    _finish(b, out, m, relu, y)


def _linear(layer: Int8Layer, b: OnnxBuilder, x: str, y: str, info: LayerInfo, relu: bool) -> None:
    m = layer.module
    if len(info.in_shape) == 2:  # Gemm, as quantize_static writes it
        w, w_scale = _weight(b, m.weight(), 0)
        out = b.op("Gemm", [x, w, *_bias(b, m.bias(), layer.input_qdq.scale, w_scale)], transB=1)
    else:
        w, w_scale = _weight(b, m.weight(), 1)
        out = b.op("MatMul", [x, w])
        bias = _bias(b, m.bias(), layer.input_qdq.scale, w_scale)
        if bias:
            out = b.op("Add", [out, bias[0]])
    _finish(b, out, m, relu, y)


_KIND_BUILDERS = {"conv": _conv, "linear": _linear}


def _int8_builders() -> dict[type, tuple]:
    return {cls: (_KIND_BUILDERS[kind], relu) for cls, (kind, relu) in int8_layer_kinds().items()}


@register_onnx_layer(Int8Layer)
def _build_int8(layer: Int8Layer, b: OnnxBuilder, x: str, y: str, info: LayerInfo) -> None:
    build, relu = _int8_builders()[type(layer.module)]
    build(layer, b, x, y, info, relu)


# --- the graph rewrite -----------------------------------------------------------------------


def has_int8_graph(model: nn.Module) -> bool:
    """True for a torch.fx graph holding quantized tensors (a converted Static/QAT model)."""
    if not isinstance(model, torch.fx.GraphModule):
        return False
    return any(
        n.op == "call_function"
        and n.target in (torch.quantize_per_tensor, torch.quantize_per_channel)
        for n in model.graph.nodes
    )


def _record(model: torch.fx.GraphModule, args: tuple, kwargs: dict) -> dict:
    """Every node's value on the example inputs."""
    values = {}

    class _Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            values[n] = super().run_node(n)
            return values[n]

    names = [n.target for n in model.graph.nodes if n.op == "placeholder"]
    ordered = list(args) + [kwargs[k] for k in names[len(args) :] if k in kwargs]
    with torch.no_grad():
        _Recorder(model).run(*ordered)
    return values


def _qparams(value) -> tuple[float, int, torch.dtype] | None:
    if isinstance(value, torch.Tensor) and value.is_quantized:
        if value.qscheme() != torch.per_tensor_affine:
            raise InputError(
                "an int8 activation is quantized per channel; ONNX export handles per-tensor "
                "activations"
            )
        return value.q_scale(), value.q_zero_point(), value.dtype
    return None


def rewrite(
    model: torch.fx.GraphModule, args: tuple, kwargs: dict, session: Session
) -> torch.fx.GraphModule:
    """The float twin of a converted int8 graph (see the module docstring), its int8
    modules and Q/DQ pairs registered as markers in ``session``."""
    values = _record(model, args, kwargs)
    builders = _int8_builders()
    graph, env, count = torch.fx.Graph(), {}, [0]
    modules = dict(model.named_modules())

    def add_module(module: nn.Module, hint: str) -> str:
        count[0] += 1
        name = f"quantlens_export_{hint}_{count[0]}"
        model.add_module(name, module)
        return name

    def qdq_after(node, new, value):
        qp = _qparams(value)
        if qp is None:
            return new
        name = add_module(mark(QDQ(*qp), LayerInfo(f"{node.name}/qdq"), session), "qdq")
        return graph.call_module(name, (new,))

    for node in model.graph.nodes:
        value = values.get(node)
        if node.op == "call_function" and node.target is torch.quantize_per_tensor:
            qdq = mark(QDQ(*_qparams(value)), LayerInfo(f"{node.name}"), session)
            env[node] = graph.call_module(add_module(qdq, "quantize"), (env[node.args[0]],))
        elif node.op == "call_method" and node.target == "dequantize":
            env[node] = env[node.args[0]]
        elif node.op == "call_module" and type(modules[node.target]) in builders:
            module = modules[node.target]
            qp = _qparams(values[node.args[0]])
            layer = Int8Layer(module, *qp)
            env[node] = graph.call_module(
                add_module(mark(layer, LayerInfo(node.target), session), "int8"),
                (env[node.args[0]],),
            )
        elif node.op == "call_module" and is_torch_quantized(modules[node.target]):
            raise InputError(
                f"layer {node.target!r} ({type(modules[node.target]).__name__}) has no ONNX int8 "
                "form here; leave it in float (skip=[...]) or export with format='torchscript'"
            )
        elif node.op == "call_function" and str(node.target).startswith("quantized."):
            if node.target not in _FUNCTIONAL:
                raise InputError(
                    f"the int8 op {node.target} at {node.name!r} has no ONNX form here; "
                    "leave that part in float or export with format='torchscript'"
                )
            fn, n_tensors, relu = _FUNCTIONAL[node.target]
            new = graph.call_function(fn, tuple(env[a] for a in node.args[:n_tensors]))
            if relu and not relu_is_implied(*_qparams(value)[1:]):
                new = graph.call_function(F.relu, (new,))
            env[node] = qdq_after(node, new, value)
        elif node.op == "call_function" and node.target is torch.quantize_per_channel:
            raise InputError(
                f"{node.name!r} quantizes an activation per channel; ONNX export handles per-tensor"
            )
        else:
            new = graph.node_copy(node, lambda n: env[n])
            env[node] = (
                new
                if node.op in ("output", "placeholder", "get_attr")
                else qdq_after(node, new, value)
            )
    out = torch.fx.GraphModule(model, graph)
    out.graph.eliminate_dead_code()
    out.recompile()
    return out


# --- eager-mode int8 models (Static's layer-wise fallback) --------------------------------------


def record_int8_inputs(model: nn.Module, run) -> dict[int, tuple[float, int, torch.dtype]]:
    """``{id(module): input qparams}`` of every int8 module with an ONNX form, from one
    ``run()`` of the model (eager-mode models: their Quant/DeQuant are modules)."""
    builders, found, hooks = _int8_builders(), {}, []
    for module in model.modules():
        if type(module) in builders:

            def hook(m, args):
                qp = _qparams(args[0]) if args else None
                if qp is not None:
                    found[id(m)] = qp

            hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return found


def eager_replacement(
    module: nn.Module, name: str, int8_inputs: dict, session: Session
) -> nn.Module | None:
    """The export stand-in of one eager-mode int8 module, or None if it is not one:
    ``Quantize`` -> a Q/DQ pair, ``DeQuantize`` -> identity, an int8 layer -> its marker."""
    quantize, dequantize = quant_stub_types()
    if isinstance(module, quantize):
        return mark(
            QDQ(float(module.scale), int(module.zero_point), module.dtype), LayerInfo(name), session
        )
    if isinstance(module, dequantize):
        return nn.Identity()
    if type(module) in _int8_builders():
        if id(module) not in int8_inputs:
            raise InputError(
                f"layer {name!r} did not run on the example inputs; ONNX export needs its input "
                "scale"
            )
        return mark(Int8Layer(module, *int8_inputs[id(module)]), LayerInfo(name), session)
    return None
