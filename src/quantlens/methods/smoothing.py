"""SmoothQuant: migrate activation outliers into the weights before int8 (W8A8) quantization.

Xiao, Lin, Seznec, Wu, Demouth & Han, "SmoothQuant: Accurate and Efficient Post-Training
Quantization for Large Language Models" (ICML 2023).

A transformer's Linear inputs ``X`` often have a few channels ``j`` whose values are 10-100x
the others; one int8 scale per token (or per tensor) then spends its levels on them and
rounds the rest away. Weights have no such outliers. SmoothQuant divides each input channel
by

    s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)

and multiplies the weight's column ``j`` by it: ``Y = (X diag(s)^-1) (diag(s) W^T)`` is the
same product, with the difficulty moved from the activation to the weight. ``alpha = 0.5``
is the paper's default; ``"auto"`` searches a grid of ``alpha`` per group of Linears sharing
an input, keeping the one whose int8 output (fake-quantized activations and weights) is
closest to float on calibration rows (and no scaling if none beats it).

``1 / s`` is folded into the op that produces ``X`` (see :mod:`quantlens.methods.scale_fold`):
a LayerNorm / RMSNorm or the previous Linear. Groups whose input has no such producer (in a
post-LN encoder such as BERT the norm output also feeds the residual; Llama's ``o_proj`` and
``down_proj``) are smoothed under Dynamic too: each of their DynamicLinears keeps ``s`` as an
``input_scale`` and divides its input by it before quantizing it (one element-wise op,
:mod:`quantlens.nn.input_scale`; saved in the checkpoint). Static's int8 modules run on
PyTorch's kernels, which have no such input, so there these groups stay unscaled. The summary
says which groups were folded and which kept an explicit scale.

Used as an option of :class:`~quantlens.methods.dynamic.Dynamic` and
:class:`~quantlens.methods.static.Static`: ``ql.Dynamic(smoothquant=0.5)``,
``ql.Static(smoothquant="auto")``; both need ``calib_data``.
"""

from __future__ import annotations

import torch
from torch import nn

from quantlens.core.qtensor import quantize_tensor
from quantlens.core.scheme import QScheme
from quantlens.errors import ConfigError
from quantlens.methods.base import QuantContext
from quantlens.methods.scale_apply import own_weights, scale_group, scaling_note
from quantlens.methods.scale_fold import InputStats, calibrated_groups, consumer, sum_over_ranks

ALPHA_GRID = tuple(i / 10 for i in range(1, 10))
"""The ``alpha`` values ``smoothquant="auto"`` tries (0.1 ... 0.9)."""

MIN_SCALE = 1e-5

_WEIGHT = QScheme(bits=8, symmetric=True, granularity="per_channel", axis=0)
_TOKEN = QScheme(bits=8, symmetric=False, granularity="per_channel", axis=0)
_TENSOR = QScheme(bits=8, symmetric=False)


def check_alpha(value: float | str | None, owner: str) -> float | str | None:
    """Validate a ``smoothquant=`` option: None, ``"auto"`` or a number in [0, 1].

    Raises:
        ConfigError: any other value.

    Example:
        >>> check_alpha(0.5, "Dynamic")
        0.5
    """
    if value is None or value == "auto":
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise ConfigError(
        f"{owner}(smoothquant={value!r}) is not valid; give the migration strength alpha "
        "in [0, 1] (0.5 is the usual), 'auto' to search it, or None"
    )


def smooth_scales(absmax: torch.Tensor, weights: list[torch.Tensor], alpha: float):
    """``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` over the group's weights.

    Args:
        absmax: ``(C,)`` per-channel max of the input.
        weights: the group's ``(out, C)`` weights.
        alpha: migration strength.

    Returns:
        ``(C,)`` scales (1 where the input channel is never active).

    Example:
        >>> smooth_scales(torch.tensor([8.0, 1.0]), [torch.ones(3, 2)], 0.5)
        tensor([2.8284, 1.0000])
    """
    wmax = torch.stack([w.detach().abs().amax(0).float().cpu() for w in weights]).amax(0)
    s = absmax.clamp_min(MIN_SCALE).pow(alpha) / wmax.clamp_min(MIN_SCALE).pow(1 - alpha)
    return torch.where(absmax > 0, s.clamp_min(MIN_SCALE), torch.ones_like(s))


def _w8a8_error(x: torch.Tensor, weights, s: torch.Tensor, per_token: bool) -> float:
    """Output error of int8 activations ``x / s`` times int8 weights ``W diag(s)``."""
    xq = quantize_tensor(x / s, _TOKEN if per_token else _TENSOR).dequantize()
    err = 0.0
    for w in weights:
        w = w.detach().float().cpu()
        wq = quantize_tensor(w * s, _WEIGHT).dequantize()
        err += float(((x @ w.T) - (xq @ wq.T)).pow(2).sum())
    return err


def choose_scales(
    stats: InputStats,
    weights: list[torch.Tensor],
    alpha: float | str,
    per_token: bool,
    sync: bool = True,
) -> tuple[torch.Tensor | None, float | None]:
    """The scales of one group: for a fixed ``alpha`` its scales; for ``"auto"`` the grid
    point with the least W8A8 output error on the sampled rows (summed over
    ``torch.distributed`` ranks with ``sync``), or ``(None, None)`` when no scaling beats
    leaving the group alone."""
    if alpha != "auto":
        return smooth_scales(stats.absmax, weights, float(alpha)), float(alpha)
    x = stats.sample
    candidates = [torch.ones(x.shape[1])]
    candidates += [smooth_scales(stats.absmax, weights, a) for a in ALPHA_GRID]
    errors = sum_over_ranks([_w8a8_error(x, weights, s, per_token) for s in candidates], sync)
    best = min(range(len(errors)), key=errors.__getitem__)
    return (None, None) if best == 0 else (candidates[best], ALPHA_GRID[best - 1])


@torch.no_grad()
def smooth(
    model: nn.Module,
    names: list[str],
    ctx: QuantContext,
    alpha: float | str,
    *,
    per_token: bool,
    sync: bool = True,
    explicit: bool = False,
) -> nn.Module:
    """Apply SmoothQuant to the Linears ``names`` of ``model`` (in place) and note what was
    done in ``ctx.summary``.

    Args:
        model: the float model about to be int8-quantized.
        names: the Linears that will be quantized.
        ctx: the quantization context (its ``calib_data`` is required).
        alpha: migration strength in [0, 1], or ``"auto"``.
        per_token: activations will be quantized per token (else per tensor); ``"auto"``
            scores candidates that way.
        sync: merge the activation maxima over ``torch.distributed`` ranks.
        explicit: the quantized layers can keep an input scale (Dynamic's DynamicLinear):
            groups with nothing to fold into are smoothed too, each of their Linears
            dividing its input by ``s`` before quantizing it.

    Returns:
        ``model``, smoothed.

    Raises:
        ConfigError: no ``calib_data``.

    Example:
        >>> smooth(model, ["fc1"], ctx, 0.5, per_token=True)
    """
    if ctx.calib_data is None:
        raise ConfigError(
            "smoothquant needs calibration data for the activation ranges: "
            "ql.quantize(model, config, calib_data=batches)"
        )
    was_training = model.training
    model.eval()
    try:
        groups, unfoldable, stats = calibrated_groups(
            model, names, ctx, sync=sync, what="SmoothQuant calibration", explicit=explicit
        )
        wanted, scaled = own_weights(model, names), [0, 0]  # explicit: no tied weights
        alphas: list[float] = []
        for i, (group, st) in enumerate(zip(groups + unfoldable, stats)):
            foldable = i < len(groups)
            kept = group.consumers if foldable else [n for n in group.consumers if n in wanted]
            if not kept:
                continue
            weights = [consumer(model, n).weight for n in kept]
            s, used = choose_scales(st, weights, alpha, per_token, sync)
            if s is not None:
                scale_group(model, group, s, foldable, wanted)
                scaled[0 if foldable else 1] += 1
                if used is not None:
                    alphas.append(used)
    finally:
        model.train(was_training)
    ctx.summary.note(
        scaling_note(
            f"SmoothQuant (alpha={alpha}): smoothed",
            (scaled[0], scaled[1]),
            groups,
            unfoldable,
            alphas if alpha == "auto" else [],
            "stay unscaled",
        )
    )
    return model
