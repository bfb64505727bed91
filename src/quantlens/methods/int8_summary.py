"""The summary of a Static or QAT conversion: which layers became int8, which stayed float
and why, what was fused, and the Quant/DeQuant boundaries of the graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from quantlens.methods.backends import torch_ao
from quantlens.methods.base import SKIP_REASON, QuantContext, module_bytes
from quantlens.methods.int8_custom import custom_modules
from quantlens.methods.int8_state import int8_state

if TYPE_CHECKING:
    from quantlens.methods.int8_graph import Plan

__all__ = ["ctx_method", "float_layers", "summarize"]


def _state_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        if value.is_quantized:
            extra = (
                value.q_per_channel_scales().numel() * 12
                if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
                else 12
            )
            return value.numel() * value.element_size() + extra
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_state_bytes(v) for v in value)
    return 0


def float_layers(model: nn.Module) -> dict[str, tuple[str, int]]:
    """``{name: (kind, bytes)}`` of the float model's leaf modules (recorded before capture)."""
    return {
        n: (type(m).__name__, module_bytes(m))
        for n, m in model.named_modules()
        if n and not list(m.children())
    }


def summarize(
    ctx: QuantContext,
    before: dict[str, tuple[str, int]],
    converted: nn.Module,
    plan: Plan,
    detail: str,
) -> None:
    """Record which layers were quantized, which stayed float and why, and what was fused."""
    modules = dict(converted.named_modules())
    custom = tuple(q for _, _, q in custom_modules())
    fused = []
    for name, (kind, nbytes) in before.items():
        owner = next((p for p in plan.reasons if name == p or name.startswith(p + ".")), None)
        if any(name == p or name.startswith(p + ".") for p in plan.other_method):
            continue
        if owner is not None and plan.reasons[owner] == SKIP_REASON:
            ctx.record_skip(name, kind, bytes_before=nbytes, bytes_after=nbytes)
        elif owner is not None:
            ctx.summary.add(
                name,
                kind,
                "float",
                reason=plan.reasons[owner],
                bytes_before=nbytes,
                bytes_after=nbytes,
            )
        elif name not in modules:  # folded into a fused module, or a Python module traced through
            if isinstance(getattr(nn, kind, None), type):  # torch.fx fuses only torch.nn layers
                fused.append(name)
        elif torch_ao.is_quantized_module(modules[name]) or isinstance(modules[name], custom):
            after = sum(_state_bytes(v) for v in modules[name].state_dict().values())
            ctx.summary.add(
                name,
                kind,
                "quantized",
                method=ctx_method(ctx),
                detail=detail,
                bytes_before=nbytes,
                bytes_after=after,
            )
        elif nbytes:
            ctx.summary.add(
                name,
                kind,
                "float",
                reason=f"no int8 kernel for {kind} on this backend; "
                "runs in float between DeQuant/Quant",
                bytes_before=nbytes,
                bytes_after=nbytes,
            )
    if fused:
        ctx.summary.note(
            f"fused into the layer before them (Conv/Linear+BN+ReLU): {', '.join(fused)}"
        )
    graph = getattr(converted, "graph", None)
    if graph is not None:
        quants = sum(1 for n in graph.nodes if n.target is torch.quantize_per_tensor)
        dequants = sum(1 for n in graph.nodes if n.target == "dequantize")
        ctx.summary.note(
            f"{quants} Quant / {dequants} DeQuant boundaries inserted (inputs, outputs, float "
            "islands)"
        )


def ctx_method(ctx: QuantContext) -> str:
    """``"static"`` or ``"qat"``: the int8 method that prepared ``ctx``'s model."""
    return int8_state(ctx).method
