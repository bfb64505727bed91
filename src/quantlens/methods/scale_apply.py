"""Applying the per-channel scales AWQ and SmoothQuant search: folded into a group's
producer (:func:`quantlens.methods.scale_fold.fold`), or kept by each quantized layer as an
explicit input scale where there is no producer to fold into; and the summary note that says
which."""

from __future__ import annotations

import torch
from torch import nn

from quantlens.methods.scale_fold import FoldGroup, consumer, fold
from quantlens.nn.input_scale import input_scale_of, scale_input, set_input_scale


def _divide_input(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of a float Linear holding an input scale: ``x / s``."""
    return (scale_input(module, args[0]), *args[1:])


@torch.no_grad()
def attach_input_scale(linear: nn.Linear, s: torch.Tensor) -> None:
    """Multiply ``linear``'s weight columns by ``s`` and make it divide its input by ``s``
    (an ``input_scale`` buffer and a forward pre-hook, so the float model still computes
    the same); the quantized layer built from it keeps the buffer
    (:mod:`quantlens.nn.input_scale`). A second call multiplies the scales."""
    linear.weight.mul_(s.to(linear.weight.device, linear.weight.dtype))
    old = input_scale_of(linear)
    set_input_scale(linear, s.float() if old is None else old * s.to(old.device))
    if old is None:
        linear.register_forward_pre_hook(_divide_input)


def own_weights(model: nn.Module, names: list[str]) -> set[str]:
    """The Linears among ``names`` that can keep an explicit input scale: those whose weight
    no other module shares (a tied ``lm_head``'s weight is the input embedding's, which
    multiplying its columns by ``s`` would change too).

    Example:
        >>> own_weights(llm, ["lm_head", "model.layers.0.self_attn.o_proj"])
        {'model.layers.0.self_attn.o_proj'}
    """
    users: dict[int, int] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            users[id(p)] = users.get(id(p), 0) + 1
    return {n for n in names if users.get(id(consumer(model, n).weight), 0) == 1}


def scale_group(
    model: nn.Module, group: FoldGroup, s: torch.Tensor, foldable: bool, wanted: set[str]
) -> None:
    """Apply the scales ``s`` of one group: folded into its producer, or (not ``foldable``)
    kept by each of its consumers in ``wanted`` as an explicit input scale (``wanted`` then
    holds only layers with weights of their own, :func:`own_weights`)."""
    if foldable:
        fold(model, group, s)
        return
    for name in group.consumers:
        if name in wanted:
            attach_input_scale(consumer(model, name), s)


def scaling_note(
    head: str,
    scaled: tuple[int, int],
    groups: list[FoldGroup],
    unfoldable: list[FoldGroup],
    alphas: list[float],
    unscaled: str,
) -> str:
    """The summary line of a scale search: how many groups were scaled (``scaled``: folded,
    with an explicit input scale), with which alphas, and which had nothing to fold into
    (``unscaled`` says what became of those not given an explicit scale)."""
    folded, explicit = scaled
    text = f"{head} {folded + explicit} of {len(groups) + len(unfoldable)} input group(s)"
    if alphas:
        text += f" (alpha {min(alphas)}" + (
            f"-{max(alphas)})" if max(alphas) > min(alphas) else ")"
        )
    text += f": {folded} folded into the preceding norm / Linear"
    if unfoldable and explicit:
        text += (
            f", {explicit} of the {len(unfoldable)} with nothing to fold into kept as an explicit "
            f"input scale of the quantized layer (e.g. {unfoldable[0].consumers[0]})"
        )
        if explicit < len(unfoldable):
            text += (
                f"; the other {len(unfoldable) - explicit} {unscaled} (a weight tied to another "
                "layer's, or no scale helped)"
            )
    elif unfoldable:
        text += (
            f"; {len(unfoldable)} have no norm or Linear to fold the scales into "
            f"(e.g. {unfoldable[0].consumers[0]}) and {unscaled}"
        )
    return text
