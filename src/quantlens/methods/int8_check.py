"""The first run of an int8 model: Static and QAT never hand back a model that fails at its
first use.

Quantized kernels return tensors in their own memory layout (a quantized convolution's
output is channels-last), and some tensor methods that work on the float model do not work
on those: ``x.view(x.size(0), -1)`` after a quantized convolution is the classic one. So,
after converting:

1. :func:`contiguous_views` makes the input of every ``view`` contiguous (a no-op for a
   tensor that already is);
2. :func:`first_run` runs the model once on an example batch. Where an op fails, it is
   repaired in the graph: first its inputs are made contiguous; then it runs in float
   (a DeQuant before it, and, where its result stays in the range of its input, a Quant
   after it with that input's scale and zero point). Every repair is recorded in the
   summary. What cannot be repaired raises :class:`~quantlens.errors.QuantizationFailedError`
   naming the op and the module it belongs to.

Example:
    >>> converted = torch_ao.convert(prepared, backend="x86")
    >>> contiguous_views(converted, summary)
    >>> first_run(converted, example, summary)
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from quantlens.core.data import Batch, first_tensor
from quantlens.core.metrics import cosine_similarity
from quantlens.errors import QuantizationFailedError, error_line
from quantlens.methods.backends import torch_ao
from quantlens.methods.base import QuantContext, QuantSummary
from quantlens.methods.int8_inputs import make_batch, make_inputs
from quantlens.methods.int8_state import int8_state

MAX_REPAIRS = 8


def contiguous_views(model: nn.Module, summary: QuantSummary) -> int:
    """Insert ``.contiguous()`` before every ``Tensor.view`` of a graph-mode int8 model.

    Args:
        model: a converted model; anything but a ``torch.fx.GraphModule`` is left as is.
        summary: where the change is noted.

    Returns:
        The number of ``view`` calls changed.
    """
    graph = getattr(model, "graph", None)
    if not isinstance(model, torch.fx.GraphModule) or graph is None:
        return 0
    views = [n for n in graph.nodes if n.op == "call_method" and n.target == "view"]
    for node in views:
        _contiguous_input(graph, node, node.args[0])
    if views:
        model.recompile()
        summary.note(
            f"made the input of {len(views)} view() call(s) contiguous "
            "(int8 kernels return channels-last tensors, which view() cannot reshape)"
        )
    return len(views)


def first_run(model: nn.Module, inputs: tuple | Batch | None, summary: QuantSummary) -> None:
    """Run ``model`` once on ``inputs``; repair the graph where an op fails, or raise.

    Args:
        model: the converted int8 model (graph mode: repaired in place).
        inputs: positional example inputs, or a :class:`Batch` with keyword inputs (run as
            the user calls the model; failures are located by module), or None (nothing to
            run; noted in the summary).
        summary: repairs are noted here.

    Raises:
        QuantizationFailedError: an op fails and no repair makes the model run; the message
            names the op and its module.
    """
    if inputs is None:
        summary.note(
            "not run after converting: no example inputs were known (pass example_inputs=...)"
        )
        return
    model.eval()
    for _ in range(MAX_REPAIRS + 1):
        failure = _run(model, inputs)
        if failure is None:
            return
        node, values, exc = failure
        repaired = (
            isinstance(node, torch.fx.Node)
            and isinstance(model, torch.fx.GraphModule)
            and _repair(model, node, values, exc, summary)
        )
        if not repaired:
            where = _where(model, node)
            raise QuantizationFailedError(
                f"the int8 model fails at its first run in {where}: {error_line(exc, 200)}; "
                "leave that module in float (skip=[...]) or make the op accept quantized tensors"
            ) from exc
    raise QuantizationFailedError(
        f"the int8 model still fails after {MAX_REPAIRS} repairs; leave the failing modules in "
        "float (skip=[...])"
    )


def check_converted(model: nn.Module, ctx: QuantContext) -> None:
    """:func:`contiguous_views` then :func:`first_run` on the example batch kept at prepare
    time (:attr:`Int8State.example <quantlens.methods.int8_state.Int8State.example>`), else two
    rows of the recorded input shapes."""
    contiguous_views(model, ctx.summary)
    state = int8_state(ctx)
    example = state.example
    desc = state.example_desc or getattr(model, "quantlens_example_inputs", None)
    if example is None and desc is not None and desc.get("kwargs"):
        example = make_batch(desc)  # keyword inputs (a tokenized batch)
    elif example is None and desc is not None:
        example = tuple(torch.cat([t, t]) if t.ndim else t for t in make_inputs(desc))
    first_run(model, example, ctx.summary)
    check_agreement(model, example, state.float_reference, ctx.summary)


AGREEMENT_FLOOR = 0.9
"""Below this cosine between the int8 and the float output on the example batch, converting
warns and says so in the summary: the model runs, but some layers lose too much."""


def output_of(model: nn.Module, inputs: tuple | Batch) -> torch.Tensor | None:
    """The first tensor ``model`` returns for ``inputs`` (a tensor, or the first one in a
    tuple, list or dict of outputs, such as a Hugging Face output's ``logits``), as float32;
    None when the model does not run on them (the steps after say why, in their words)."""
    try:
        with torch.no_grad(), torch_ao.quiet():
            out = inputs.run(model) if isinstance(inputs, Batch) else model(*inputs)
    except Exception:  # noqa: BLE001
        return None
    found = first_tensor(out)
    if found is None:
        return None
    return (found.dequantize() if found.is_quantized else found).detach().float()


def check_agreement(
    model: nn.Module, inputs, reference: torch.Tensor | None, summary: QuantSummary
) -> None:
    """Compare the int8 model's output on ``inputs`` with the float model's ``reference``;
    below :data:`AGREEMENT_FLOOR` cosine, warn and note it in ``summary``."""
    if reference is None or inputs is None:
        return
    out = output_of(model, inputs)
    if out is None or out.shape != reference.shape or not torch.isfinite(reference).all():
        return
    cosine = float(cosine_similarity(reference, out))
    if cosine < AGREEMENT_FLOOR:
        message = (
            f"the int8 model's output agrees with float at cosine {cosine:.3f} on the example "
            f"batch (below {AGREEMENT_FLOOR}): some layers lose too much; find them with quantlens "
            "sensitivity (or ql.analysis.sensitivity) and leave them in float with skip=[...]"
        )
        summary.note(message)
        warnings.warn(message, stacklevel=4)


# --- running and locating --------------------------------------------------------------------


class _Recorder(torch.fx.Interpreter):
    """Runs a GraphModule node by node and remembers the node that raised."""

    def __init__(self, module: torch.fx.GraphModule):
        super().__init__(module)
        self.failed: torch.fx.Node | None = None

    def run_node(self, n: torch.fx.Node):
        try:
            return super().run_node(n)
        except Exception:
            if self.failed is None:
                self.failed = n
            raise


def _run(model: nn.Module, inputs: tuple | Batch):
    """None if the model runs, else ``(failing node or None, node values, exception)``."""
    with torch.no_grad(), torch_ao.quiet():
        if not isinstance(model, torch.fx.GraphModule) or isinstance(inputs, Batch):
            return _run_eager(model, inputs)
        rec = _Recorder(model)
        try:
            rec.run(*inputs)
        except Exception as exc:  # noqa: BLE001
            return rec.failed, rec.env, exc
    return None


def _run_eager(model: nn.Module, inputs: tuple | Batch):
    """None if the model runs, else
    ``(name of the innermost module that raised, {}, exception)``."""
    names = {id(m): n for n, m in model.named_modules()}
    entered: list[str] = []  # the modules running now, outermost first

    def pre(module, args):
        entered.append(names.get(id(module), ""))

    def post(module, args, output):
        entered.pop()

    handles = [
        h
        for m in model.modules()
        for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))
    ]
    try:
        inputs.run(model) if isinstance(inputs, Batch) else model(*inputs)
    except Exception as exc:  # noqa: BLE001 - any failure is reported as such
        return (entered[-1] if entered else None), {}, exc
    finally:
        for h in handles:
            h.remove()
    return None


def _where(model: nn.Module, node: torch.fx.Node | str | None) -> str:
    """``op 'view' (module 'features.3', graph node 'view_1')`` for a node; ``module 'x'``
    for the name of an eager-mode module."""
    if node is None or node == "":
        return "the model's own forward"
    if isinstance(node, str):
        return f"module {node!r} ({type(model.get_submodule(node)).__name__})"
    stack = node.meta.get("nn_module_stack") or {}
    owner = next(reversed(stack.values()), None) if stack else None
    module = node.target if node.op == "call_module" else (owner[0] if owner else "")
    op = (
        node.target
        if isinstance(node.target, str)
        else getattr(node.target, "__name__", str(node.target))
    )
    owner_text = f"module {module!r}" if module else "the model's own forward"
    return f"op {op!r} ({owner_text}, graph node {node.name!r})"


# --- repairs ---------------------------------------------------------------------------------


def _tensor_inputs(node: torch.fx.Node, values: dict) -> list[torch.fx.Node]:
    return [a for a in node.all_input_nodes if isinstance(values.get(a), torch.Tensor)]


def _contiguous_input(graph: torch.fx.Graph, node: torch.fx.Node, arg) -> None:
    if not isinstance(arg, torch.fx.Node) or (
        arg.op == "call_method" and arg.target == "contiguous"
    ):
        return
    with graph.inserting_before(node):
        made = graph.call_method("contiguous", (arg,))
    node.replace_input_with(arg, made)


def _repair(
    model: torch.fx.GraphModule,
    node: torch.fx.Node,
    values: dict,
    exc: Exception,
    summary: QuantSummary,
) -> bool:
    """One repair of the failing ``node``; False when none applies."""
    graph = model.graph
    where, why = _where(model, node), error_line(exc, 120)
    strided = [a for a in _tensor_inputs(node, values) if not values[a].is_contiguous()]
    if strided and any(word in str(exc) for word in ("stride", "contiguous")):
        for arg in strided:
            _contiguous_input(graph, node, arg)
        model.recompile()
        summary.note(f"first run: {where} failed ({why}); repaired: its inputs made contiguous")
        return True
    quantized = [a for a in _tensor_inputs(node, values) if values[a].is_quantized]
    if not quantized:
        return _quantize_inputs(model, node, values, where, why, summary)
    for arg in quantized:
        with graph.inserting_before(node):
            deq = graph.call_method("dequantize", (arg,))
        node.replace_input_with(arg, deq)
        values[deq] = values[arg].dequantize()
    model.recompile()
    summary.note(
        f"first run: {where} failed on quantized tensors ({why}); repaired: it runs in float "
        "(DeQuant before it)"
    )
    _requantize_after(model, node, values[quantized[0]], values, summary)
    return True


def _quantize_inputs(
    model: torch.fx.GraphModule,
    node: torch.fx.Node,
    values: dict,
    where: str,
    why: str,
    summary: QuantSummary,
) -> bool:
    """An int8 module that receives float (after a repair above it): a Quant before it
    with the range its input has on the example batch."""
    if node.op != "call_module" or not torch_ao.is_quantized_module(
        model.get_submodule(str(node.target))  # a call_module node's target is its name
    ):
        return False
    floats = [a for a in _tensor_inputs(node, values) if values[a].is_floating_point()]
    for arg in floats:
        low, high = min(float(values[arg].min()), 0.0), max(float(values[arg].max()), 0.0)
        scale = max((high - low) / 255, 1e-8)
        zp = int(min(max(round(-low / scale), 0), 255))
        with model.graph.inserting_before(node):
            q = model.graph.call_function(torch.quantize_per_tensor, (arg, scale, zp, torch.quint8))
        node.replace_input_with(arg, q)
    model.recompile()
    summary.note(
        f"first run: {where} received float ({why}); repaired: a Quant before it with the range "
        "of its input on the example batch (one batch, not the calibration data)"
    )
    return bool(floats)


def _requantize_after(
    model: torch.fx.GraphModule,
    node: torch.fx.Node,
    q_in: torch.Tensor,
    values: dict,
    summary: QuantSummary,
) -> None:
    """Quantize ``node``'s float result again with its input's scale and zero point when
    that result, on the example batch, stays within the input's range (shape and selection
    ops); otherwise it stays float and the next op receives float."""
    if q_in.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return
    env = {n: v for n, v in values.items() if n is not node}
    interp = torch.fx.Interpreter(model)
    interp.env = env
    try:
        with torch.no_grad(), torch_ao.quiet():
            out = interp.run_node(node)
    except Exception:  # noqa: BLE001 - the op fails in float too: the next run reports it
        return
    if not (isinstance(out, torch.Tensor) and out.is_floating_point()) or out.numel() == 0:
        return
    info = torch.iinfo(q_in.dtype)
    scale, zp = q_in.q_scale(), q_in.q_zero_point()
    low, high = (info.min - zp) * scale, (info.max - zp) * scale
    slack = 0.1 * (high - low)  # e.g. a bicubic overshoot, clamped by the Quant
    if float(out.min()) < low - slack or float(out.max()) > high + slack:
        return
    graph = model.graph
    with graph.inserting_after(node):
        q = graph.call_function(torch.quantize_per_tensor, (node, scale, zp, q_in.dtype))
    node.replace_all_uses_with(q, delete_user_cb=lambda user: user is not q)
    model.recompile()
    summary.note(f"  and a Quant after it with its input's scale {scale:.4g} and zero point {zp}")
