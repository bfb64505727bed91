"""What the int8 methods (Static, QAT) keep between prepare and convert.

``prepare`` captures the graph and learns about the model (its float layers, the example
input, the float output to compare with); ``convert`` needs all of it, possibly in another
call (``ql.prepare_qat`` ... ``ql.convert``). It travels as the context's typed
:attr:`QuantContext.state <quantlens.methods.base.QuantContext.state>`, an
:class:`Int8State`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from quantlens.core.data import Batch
from quantlens.methods.base import QuantContext

if TYPE_CHECKING:
    from quantlens.methods.int8_graph import Plan

Int8Method = Literal["static", "qat"]


@dataclass
class Int8State:
    """The prepare-time state of a Static / QAT model.

    Args:
        method: which int8 method prepared the model.
        float_layers: the float model's layers with weights (name -> (class name, bytes)),
            for the summary.
        example_desc: the shapes and dtypes of the example input (recorded in checkpoints).
        example_batch: the example batch (Static, when calibration data was given).
        example: what the first run after convert feeds the model: positional inputs in the
            graph's input order, or the whole batch for keyword inputs.
        float_reference: the float model's output on the example, to check the int8 one.
        plan: the graph-mode plan (None for regions and the eager fallback).
        regions: the traceable regions captured instead of the whole model, or None.
        eager_reasons: why the eager fallback left layers float (name -> reason).
        rebuilding: a checkpoint load: the structure only, nothing to measure or merge.

    Example:
        >>> state = int8_state(ctx)
        >>> state.rebuilding = True
    """

    method: Int8Method = "static"
    float_layers: dict[str, Any] = field(default_factory=dict)
    example_desc: dict[str, Any] | None = None
    example_batch: Batch | None = None
    example: Any = None
    float_reference: Any = None
    plan: Plan | None = None
    regions: list[Any] | None = None
    eager_reasons: dict[str, str] = field(default_factory=dict)
    rebuilding: bool = False


def int8_state(ctx: QuantContext) -> Int8State:
    """The :class:`Int8State` of ``ctx`` (created empty on first use).

    Args:
        ctx: the quantization context of a Static / QAT run.

    Returns:
        ``ctx.state``, an :class:`Int8State`.

    Example:
        >>> int8_state(ctx).example_desc
    """
    if not isinstance(ctx.state, Int8State):
        ctx.state = Int8State()
    return ctx.state
