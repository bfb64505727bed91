"""The note Dynamic adds when the layers it left float outweigh those it quantized."""

from __future__ import annotations

import warnings

from torch import nn

from quantlens.methods.base import QuantContext
from quantlens.methods.lm_head import output_heads


def heavy_float_params(model: nn.Module, ctx: QuantContext) -> dict[str, int]:
    """Parameters of float leaf layers that multiply by a weight matrix (not lookups or norms),
    leaving out those the user skipped."""
    out: dict[str, int] = {}
    heads = output_heads(model)  # kept float on purpose: no reason to warn
    for name, module in model.named_modules():
        if list(module.children()) or isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            continue
        if id(module) in heads:
            continue
        if ctx.is_skipped(name):
            continue
        matrices = sum(
            p.numel() for p in module.parameters(recurse=False) if p.dim() >= 2
        )  # (LSTM: weight_ih_l0, ...)
        if matrices:
            out[type(module).__name__] = out.get(type(module).__name__, 0) + matrices
    return out


def warn_if_little(model: nn.Module, ctx: QuantContext, targets, slow: list[str]) -> None:
    """Warn when the layers left float (convolutions, RNNs where int8 is slower, ...) outweigh
    the quantized ones."""
    quantized = sum(p.numel() for _, module, _, _ in targets for p in module.parameters())
    heavy = heavy_float_params(model, ctx)
    left = sum(heavy.values())
    if not targets or left <= quantized:
        return
    names = ", ".join(t[0] or "(model)" for t in targets[:3]) + (
        ", ..." if len(targets) > 3 else ""
    )
    text = (
        f"Dynamic quantized only {len(targets)} layer(s) ({names}), "
        f"{100 * quantized / (quantized + left):.0f}% of the weight-matrix parameters; "
        f"{', '.join(sorted(heavy))} stay float"
    )
    if any(k.startswith("Conv") for k in heavy):
        text += (
            " (Dynamic(modules=(..., 'conv2d')) quantizes Conv2d too; ql.Static with "
            "calibration data keeps the activations int8 between layers)"
        )
    elif slow:
        text += (
            f" ({', '.join(slow)}: int8 would be slower, see quantlens_summary): the rest alone is "
            "unlikely to be faster than float; keep the float model for speed, or ql.compare to "
            "measure"
        )
    warnings.warn(text, UserWarning, stacklevel=3)
    ctx.summary.note(text)
