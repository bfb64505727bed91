"""How a quantized model becomes an ONNX graph: float skeleton + rewritten layers.

The float parts of a model (attention, LayerNorm, pooling, residual adds, ...) go through
PyTorch's TorchScript-based ONNX exporter, which needs nothing beyond ``onnx`` (the
torch.export-based one needs ``onnxscript`` too). Every quantized layer is first swapped for
a :class:`LayerMark` that runs the layer itself (so tracing sees real values and shapes) but
exports as one placeholder node ``quantlens.Layer(key)``; afterwards each placeholder is
replaced, with the ``onnx.helper`` API, by the integer subgraph its layer's builder writes
(:func:`register_onnx_layer`). The builders see the layer's own integer codes, scales and
zero-points, so nothing is re-quantized, and they can use element types that torch has no
tensors for (INT4/UINT4, packed bytes for ``MatMulNBits``).

Why not a custom symbolic per layer: a symbolic function can only emit constants torch can
hold (no int4) and must be written against the exporter's graph context; rewriting finished
nodes keeps every quantized op in plain ``onnx.helper`` code that tests can read.

A builder: ``build(module, b: OnnxBuilder, x: str, y: str, info: LayerInfo) -> None``
writes nodes reading value ``x`` and producing value ``y``.

Tested with torch 2.13.0, onnx 1.23, onnxruntime 1.32.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quantlens.errors import InputError, error_line

OPSET = 20  # the newest the TorchScript exporter writes; raised to 21 when a builder needs it
DOMAIN = "quantlens"
MS_DOMAIN = "com.microsoft"


@dataclass
class LayerInfo:
    """What the trace learnt about one marked layer.

    Attributes:
        name: the layer's qualified name in the model.
        in_shape, out_shape: the example input / output shapes.
        extra: builder-specific facts recorded before export (e.g. the input's int8 scale).
    """

    name: str
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    extra: dict = field(default_factory=dict)


Builder = Callable[[nn.Module, "OnnxBuilder", str, str, LayerInfo], None]
_BUILDERS: dict[type, Builder] = {}


def register_onnx_layer(cls: type) -> Callable[[Builder], Builder]:
    """Decorator: ``build`` writes the ONNX subgraph for modules of type ``cls``.

    Example:
        >>> @register_onnx_layer(MyQuantLayer)
        ... def _build(module, b, x, y, info):
        ...     b.op("Identity", [x], out=y)
    """

    def wrap(build: Builder) -> Builder:
        _BUILDERS[cls] = build
        return build

    return wrap


def builder_for(module: nn.Module) -> Builder | None:
    """The registered builder for ``module``'s exact type, or None."""
    return _BUILDERS.get(type(module))


class OnnxBuilder:
    """Collects the nodes and initializers of one layer's subgraph, with unique names.

    Attributes:
        nodes, initializers: what was written, in order.
        opset: the lowest default-domain opset the written nodes need.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix or "model"
        self.nodes: list = []
        self.initializers: list = []
        self.opset = OPSET
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}/{hint}_{self._count}"

    def const(self, hint: str, array) -> str:
        """An initializer holding ``array`` (numpy or torch), named after ``hint``."""
        from onnx import numpy_helper

        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        name = self.name(hint)
        self.initializers.append(
            numpy_helper.from_array(np.array(array, order="C"), name)
        )  # (keeps 0-d)
        return name

    def const_packed(self, hint: str, elem_type: int, dims, raw: bytes) -> str:
        """An initializer of a sub-byte type (INT4/UINT4) from its packed bytes."""
        from onnx import helper

        name = self.name(hint)
        self.initializers.append(helper.make_tensor(name, elem_type, list(dims), raw, raw=True))
        return name

    def op(
        self, op_type: str, inputs: list[str], *, out: str | None = None, domain: str = "", **attrs
    ) -> str:
        """Append a node; returns its (single) output name (``out`` or a fresh one)."""
        from onnx import helper

        out = out or self.name(op_type)
        self.nodes.append(
            helper.make_node(
                op_type, inputs, [out], name=self.name(op_type), domain=domain or None, **attrs
            )
        )
        return out


class Session:
    """The marked layers of one export, by key."""

    def __init__(self) -> None:
        self.layers: list[tuple[nn.Module, LayerInfo]] = []


class _Mark(torch.autograd.Function):
    """Runs the layer; exports as ``quantlens.Layer(key)`` with the traced output type."""

    @staticmethod
    def forward(ctx, x, key, session):
        module, info = session.layers[key]
        state = torch._C._get_tracing_state()  # the tracer records this call as one node,
        torch._C._set_tracing_state(None)  # not what the layer does inside (int8 tensors)
        try:
            y = module(x)
        finally:
            torch._C._set_tracing_state(state)
        info.in_shape, info.out_shape = tuple(x.shape), tuple(y.shape)
        return y

    @staticmethod
    def symbolic(g, x, key, session):
        info = session.layers[key][1]
        # a dim equal to the input's at the same place (batch, sequence) stays symbolic, so
        # the exporter cannot fold the shapes computed from it into constants
        sizes = [
            None if i < len(info.in_shape) and d == info.in_shape[i] else d
            for i, d in enumerate(info.out_shape)
        ]
        y = g.op(f"{DOMAIN}::Layer", x, key_i=key)
        y.setType(x.type().with_dtype(torch.float32).with_sizes(sizes))
        return y


class LayerMark(nn.Module):
    """Stands in for one quantized layer during export (see the module docstring)."""

    def __init__(self, module: nn.Module, key: int, session: Session) -> None:
        super().__init__()
        self.module, self.key = module, key
        object.__setattr__(self, "_session", session)  # not a submodule, not in state

    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise InputError(
                f"layer {self._session.layers[self.key][1].name!r} takes one tensor input for ONNX "
                "export"
            )
        return _Mark.apply(x, self.key, self._session)


def mark(module: nn.Module, info: LayerInfo, session: Session) -> LayerMark:
    """Register ``module`` in ``session`` and return its marker."""
    session.layers.append((module, info))
    return LayerMark(module, len(session.layers) - 1, session)


# --- the export itself -----------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's deprecation notices and tracer warnings."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, UserWarning, torch.jit.TracerWarning):
            warnings.filterwarnings("ignore", category=category)
        yield


def trace_to_onnx(
    wrapper: nn.Module,
    args: tuple,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict,
) -> onnx.ModelProto:  # noqa: F821
    """Run PyTorch's TorchScript-based ONNX exporter on ``wrapper`` (in eval mode, no grad)."""
    import onnx

    buffer = io.BytesIO()
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            wrapper.eval(),
            args,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            custom_opsets={DOMAIN: 1},
        )
    return onnx.load_from_string(buffer.getvalue())


def rewrite_marks(model_proto, session: Session) -> None:
    """Replace every ``quantlens.Layer`` placeholder by its layer's subgraph (in place)."""
    from onnx import helper

    graph = model_proto.graph
    nodes, opset, ms = [], OPSET, False
    for node in graph.node:
        if node.domain != DOMAIN:
            nodes.append(node)
            continue
        key = next(a.i for a in node.attribute if a.name == "key")
        module, info = session.layers[key]
        b = OnnxBuilder(info.name)
        builder_for(module)(module, b, node.input[0], node.output[0], info)
        nodes += b.nodes
        graph.initializer.extend(b.initializers)
        opset = max(opset, b.opset)
        ms |= any(n.domain == MS_DOMAIN for n in b.nodes)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # traced shapes of rewritten values; ONNX Runtime infers its own
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS_DOMAIN, 1)] if ms else [])
    del model_proto.opset_import[:]
    model_proto.opset_import.extend(imports)
    model_proto.ir_version = max(model_proto.ir_version, 10 if opset >= 21 else 8)


def save_model(model_proto, path: str | os.PathLike) -> Path:
    """Write ``model_proto`` to ``path`` atomically (a temporary name renamed into place)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(
            f"cannot write {path}: the folder {path.parent} does not exist; create it first"
        )
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(model_proto.SerializeToString())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_model(model_proto) -> None:
    """Fail loudly on a graph the ONNX checker rejects (a bug in a builder)."""
    import onnx

    try:
        onnx.checker.check_model(model_proto)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - a builder bug
        raise RuntimeError(f"the exported ONNX graph is invalid: {error_line(exc)}") from exc
