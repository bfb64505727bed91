"""AWQ: activation-aware weight quantization, by per-input-channel scaling.

Lin, Tang, Tang, Yang, Chen, Wang, Xiao, Dang, Gan & Han, "AWQ: Activation-aware Weight
Quantization for LLM Compression and Acceleration" (MLSys 2024).

A few input channels of a Linear carry much larger activations than the rest, and the
weights that multiply them matter most. Scaling those weight columns up before rounding
(``W diag(s)``) shrinks their relative rounding error; dividing the input by the same ``s``
keeps the product. AWQ takes

    s = mean|x|^alpha,  normalised by sqrt(max(s) min(s)),

and searches ``alpha`` on a grid (0, 0.05, ..., 0.95) per group of Linears sharing an input,
keeping the one whose quantized output ``X (Q(W diag(s)) diag(s)^-1)^T`` is closest to the
float ``X W^T`` on calibration rows (``alpha = 0``, no scaling, is plain round-to-nearest).
``1 / s`` is folded into the norm or Linear that produces the input
(:mod:`quantlens.methods.scale_fold`: found by tracing, kept only where the model's output
is unchanged), so nothing runs at inference time. A group without one (Llama's ``o_proj``
under grouped-query attention, ``down_proj`` after SwiGLU when ``up_proj`` cannot take it)
is scaled too: each of its quantized layers keeps ``s`` as an ``input_scale`` buffer and
divides its input by it (:mod:`quantlens.nn.input_scale`, one element-wise op). The summary
says how many groups were folded and how many kept an explicit scale.

Two algorithms are registered: ``"awq"`` (the scaled weights rounded to nearest) and
``"awq+gptq"`` (the scaled weights quantized by GPTQ, with the Hessians collected on the
scaled model), as AutoAWQ / llm-compressor users combine them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from quantlens.core.qtensor import quantize_tensor
from quantlens.core.scheme import QScheme
from quantlens.errors import ConfigError
from quantlens.methods.base import QuantContext
from quantlens.methods.scale_apply import own_weights, scale_group, scaling_note
from quantlens.methods.scale_fold import calibrated_groups, consumer, sum_over_ranks
from quantlens.methods.weight_only.config import WeightOnly
from quantlens.methods.weight_only.gptq import _collect as _collect_gptq
from quantlens.methods.weight_only.gptq import _quantize as _quantize_gptq
from quantlens.methods.weight_only.registry import Algorithm, register_algorithm
from quantlens.methods.weight_only.rtn import rtn_quantize

ALPHA_GRID = tuple(i / 20 for i in range(20))
"""The ``alpha`` values searched (0 ... 0.95)."""


def awq_scales(absmean: torch.Tensor, alpha: float) -> torch.Tensor:
    """``mean|x|^alpha``, normalised so that ``max(s) * min(s) = 1``.

    Example:
        >>> awq_scales(torch.tensor([4.0, 1.0]), 1.0)
        tensor([2.0000, 0.5000])
    """
    s = absmean.clamp_min(1e-4).pow(alpha)
    return s / (s.max() * s.min()).sqrt()


def output_error(
    x: torch.Tensor, weights: list[torch.Tensor], schemes: list[QScheme], s: torch.Tensor
) -> float:
    """``sum_i ||x W_i^T - x (Q(W_i diag(s)) diag(s)^-1)^T||^2`` with round-to-nearest ``Q``.

    Args:
        x: ``(n, C)`` calibration rows.
        weights: the ``(out_i, C)`` weights.
        schemes: their quantization schemes.
        s: ``(C,)`` scales.
    """
    err = 0.0
    for w, scheme in zip(weights, schemes):
        w = w.detach().float().cpu()
        wq = quantize_tensor(w * s, scheme).dequantize() / s
        err += float((x @ (w - wq).T).pow(2).sum())
    return err


def search_alpha(
    x: torch.Tensor,
    absmean: torch.Tensor,
    weights: list[torch.Tensor],
    schemes: list[QScheme],
    sync: bool = True,
) -> tuple[float, torch.Tensor]:
    """The grid ``alpha`` (and its scales) with the least quantized output error on ``x``
    (summed over ``torch.distributed`` ranks with ``sync``, so all ranks agree)."""
    candidates = [awq_scales(absmean, a) if a else torch.ones_like(absmean) for a in ALPHA_GRID]
    errors = sum_over_ranks([output_error(x, weights, schemes, s) for s in candidates], sync)
    best = min(range(len(errors)), key=errors.__getitem__)
    return ALPHA_GRID[best], candidates[best]


def _scheme(ctx: QuantContext, name: str, weight: torch.Tensor) -> QScheme:
    """The weight scheme of layer ``name`` (one the WeightOnly config quantizes)."""
    cfg = ctx.config_for(name, WeightOnly)
    assert cfg is not None, name
    return cfg.scheme_for(tuple(weight.shape))


@torch.no_grad()
def apply_awq(model: nn.Module, names: list[str], ctx: QuantContext) -> None:
    """Search and fold the AWQ scales of the Linears ``names`` (in place), with the scheme
    each one's :class:`WeightOnly` config gives it; a note in ``ctx.summary`` says how many
    input groups were scaled.

    Raises:
        ConfigError: no ``calib_data``.
    """
    if ctx.calib_data is None:
        raise ConfigError(
            "algorithm='awq' needs calibration data: ql.quantize(model, config, calib_data=batches)"
        )
    sync = not isinstance(ctx.config, WeightOnly) or ctx.config.sync
    was_training = model.training
    model.eval()
    try:
        groups, unfoldable, stats = calibrated_groups(
            model, names, ctx, sync=sync, what="AWQ calibration", explicit=True
        )
        scaled, alphas = [0, 0], []
        own = own_weights(model, names)
        for i, (group, st) in enumerate(zip(groups + unfoldable, stats)):
            wanted = set(names) if i < len(groups) else own  # explicit: no tied weights
            quantized = [n for n in group.consumers if n in wanted]
            if not quantized:
                continue
            weights = [consumer(model, n).weight for n in quantized]
            schemes = [_scheme(ctx, n, w) for n, w in zip(quantized, weights)]
            alpha, s = search_alpha(st.sample, st.absmean, weights, schemes, sync)
            if alpha:
                foldable = i < len(groups)
                scale_group(model, group, s, foldable, wanted)
                scaled[0 if foldable else 1] += 1
                alphas.append(alpha)
    finally:
        model.train(was_training)
    ctx.summary.note(
        scaling_note(
            "AWQ: scaled",
            (scaled[0], scaled[1]),
            groups,
            unfoldable,
            alphas,
            "are rounded unscaled",
        )
    )


def _collect_awq(model: nn.Module, names: list[str], ctx: QuantContext) -> dict[str, Any]:
    apply_awq(model, names, ctx)
    return {}


def _collect_awq_gptq(model: nn.Module, names: list[str], ctx: QuantContext) -> dict[str, Any]:
    apply_awq(model, names, ctx)
    return _collect_gptq(model, names, ctx)  # on the scaled model: H of x / s


register_algorithm(
    Algorithm("awq", rtn_quantize, collect=_collect_awq, kinds=("linear",), fallback="rtn")
)
register_algorithm(
    Algorithm(
        "awq+gptq",
        _quantize_gptq,
        collect=_collect_awq_gptq,
        kinds=("linear",),
        fallback="hqq",
    )
)
