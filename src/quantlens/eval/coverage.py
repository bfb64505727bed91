"""Which layers a quantized model left in float, and why (the comparison table's
"layers: N quantized, M float" and the notes that name them).

The method's summary (``model.quantlens_summary``) lists the layers it quantized and those
it left float with a reason; :func:`float_layers` adds every layer with weights (Linear,
Conv, RNN, Embedding) that the summary does not mention at all, so such a layer is still
counted: one that Static or QAT graph capture dropped because ``forward`` never calls it,
or any layer under a method registered elsewhere that records only what it quantized.
(The built-in methods record every other layer they leave float themselves.)

Example:
    >>> [x["kind"] for x in float_layers(model, ql.quantize(model, ql.WeightOnly(bits=8)))][:1]
    ['Conv2d']
"""

from __future__ import annotations

from torch import nn

from quantlens.methods.base import QuantConfig
from quantlens.methods.layer_kinds import default_modules
from quantlens.methods.weight_only import WeightOnly

# Layers with weights a method could turn into integers; one that its summary does not
# mention stayed float without a word.
WEIGHT_LAYERS = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.LSTM,
    nn.GRU,
    nn.RNN,
    nn.Embedding,
    nn.EmbeddingBag,
)


def _not_handled(config: QuantConfig | None, kind: str, model: nn.Module) -> str:
    modules = getattr(config, "modules", None)
    if modules is None and isinstance(config, WeightOnly):
        modules = default_modules(model)  # WeightOnly's default for this model
    name = type(config).__name__ if config is not None else "the method"
    if modules:
        return f"not in {name}'s modules={tuple(modules)!r}"
    return f"{name} does not quantize {kind} layers"


def float_layers(float_model: nn.Module, q_model: nn.Module) -> list[dict]:
    """The layers ``q_model`` left in float: those its summary reports as float or skipped
    (with their reason), plus every weight layer (Linear, Conv, RNN, Embedding) of
    ``float_model`` the summary does not mention at all.

    Returns:
        ``[{"name", "kind", "reason"}, ...]`` in module order.
    """
    summary = getattr(q_model, "quantlens_summary", None)
    if summary is None:
        return []
    quantized = [r.name for r in summary.quantized]
    out = [
        {"name": r.name, "kind": r.kind, "reason": r.reason or r.action} for r in summary.skipped
    ]
    mentioned = {r.name for r in summary.records}
    config = getattr(q_model, "quantlens_config", None)
    for name, module in float_model.named_modules():
        if not isinstance(module, WEIGHT_LAYERS) or name in mentioned:
            continue
        if any(
            q == name or q.startswith(name + ".") or name.startswith(q + ".") for q in quantized
        ):
            continue  # quantized as itself, its wrapped child or inside a quantized parent
        kind = type(module).__name__
        out.append({"name": name, "kind": kind, "reason": _not_handled(config, kind, float_model)})
    return out


__all__ = ["WEIGHT_LAYERS", "float_layers"]
