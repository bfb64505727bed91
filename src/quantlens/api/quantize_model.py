"""Quantizing a model: quantize, the two phases prepare / convert, and dequantize back."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from quantlens import checkpoint
from quantlens.api._steps import (
    check_model,
    finish,
    linear_like_to_linear,
    methods_of,
    set_attrs,
    to_float32,
)
from quantlens.core.data import DataSource, ModelInputs
from quantlens.errors import InputError, NothingToQuantizeError, SlowerThanFloatError
from quantlens.methods.base import QuantConfig, QuantContext, QuantSummary, state_bytes
from quantlens.methods.dynamic_layers import SLOWER
from quantlens.methods.guards import refuse_quantized, restore_modes, train_modes


def quantize(
    model: nn.Module,
    config: QuantConfig,
    *,
    calib_data: DataSource | None = None,
    inplace: bool = False,
    example_inputs: ModelInputs | None = None,
    calib_batches: int | None = None,
    progress: bool | None = None,
) -> nn.Module:
    """Quantize ``model`` with ``config`` and return the quantized model.

    Args:
        model: any ``nn.Module`` (a hand-written model, a Hugging Face transformer, ...).
        config: one method config (``ql.WeightOnly``, ``ql.Dynamic``, ``ql.Static``, ...),
            whose ``skip`` and ``overrides`` select layers and mix methods.
        calib_data: batches for methods that calibrate (Static, weight-only GPTQ and AWQ,
            ``smoothquant=`` of Dynamic / Static): any form
            :func:`quantlens.core.data.iter_batches` accepts.
        inplace: modify ``model`` itself instead of a copy.
        example_inputs: inputs for graph capture when no calibration data is given.
        calib_batches: stop calibration after this many batches.
        progress: show progress bars (default: when stderr is a terminal).

    Returns:
        The quantized model, in the train/eval mode ``model`` was in (module by module),
        whatever the method: methods calibrate in eval mode inside, and a model given in
        train mode comes back in train mode, like any ``nn.Module`` transform (weight-only
        and dynamic layers keep dropout active then; the int8 graphs of Static and QAT
        compute as in eval mode whatever the flag); call ``.eval()`` for inference.
        ``model.quantlens_summary`` says what was quantized, what was left in float and why,
        and the bytes before and after (of the quantized layers and of the whole model).

    Raises:
        InputError: ``model`` is already quantized (by quantlens or PyTorch) or prepared:
            quantize the float model, or ``dequantize`` a weight-only one first.

    Example:
        >>> qm = ql.quantize(model, ql.WeightOnly(bits=4, group_size=128))
        >>> print(qm.quantlens_summary)
    """
    check_model(model, config)
    refuse_quantized(model)
    modes = train_modes(model)
    source = checkpoint.source_of(model)
    summary = QuantSummary(model_bytes_before=state_bytes(model)[0])
    target = model if inplace else copy.deepcopy(model)
    to_float32(target, summary)
    linear_like_to_linear(target, summary)
    ctx = QuantContext(config, summary, calib_data, example_inputs, progress, calib_batches)
    for method in methods_of(config):
        target = method.apply(target, ctx)
    if not summary.quantized:
        _refuse_all_slower(config, summary)
        kinds = sorted({type(m).__name__ for m in model.modules() if not list(m.children())})
        raise NothingToQuantizeError(
            f"{type(config).__name__} found no layer to quantize in this model "
            f"(its layers: {', '.join(kinds) or 'none'}); "
            + ("check skip/overrides, or " if config.skip or config.overrides else "")
            + "choose a method that supports these layers"
            + "".join(
                f" ({r.name or '(model)'}: {r.reason})"
                for r in summary.records[:1]
                if r.action == "float" and r.reason
            )
        )
    summary.model_bytes_after = state_bytes(target)[0]
    restore_modes(target, modes)
    return finish(target, config, summary, source)


def _refuse_all_slower(config: QuantConfig, summary: QuantSummary) -> None:
    """Raise when the layers the method handles all stayed float because int8 would be
    slower there (a small LSTM and its head under Dynamic): the float model is the faster one."""
    slower = [r for r in summary.records if r.action == "float" and r.reason.startswith(SLOWER)]
    if not slower:
        return
    why = "; ".join(  # the rule's numbers only: the message stays one short line
        f"{r.name or '(model)'}: {r.reason.split(';')[0].split(',')[0]}" for r in slower
    )
    anyway = " quantizes it anyway"
    fixes = sorted(
        {r.reason.rsplit("; ", 1)[-1].removesuffix(anyway) for r in slower if anyway in r.reason}
    )
    raise SlowerThanFloatError(
        f"{type(config).__name__} quantized nothing: int8 would be slower than float32 for "
        f"every layer it handles ({why.replace(SLOWER + ': ', '')}): keep the float model for "
        "speed"
        + (
            f" ({' and '.join(fixes)} quantize{'' if len(fixes) > 1 else 's'} "
            f"{'them' if len(slower) > 1 else 'it'} anyway)"
            if fixes
            else ""
        )
    )


def prepare(
    model: nn.Module,
    config: QuantConfig,
    *,
    inplace: bool = False,
    example_inputs: ModelInputs | None = None,
) -> nn.Module:
    """First half of a two-phase method (Static, QAT): insert observers / fake quantization.

    Run calibration batches (Static) or train (QAT) on the returned model, then call
    :func:`convert`. The prepared model is in the mode its method works in: eval for
    calibration (Static), train for QAT.
    """
    check_model(model, config)
    refuse_quantized(model)
    prepares = [m.prepare for m in methods_of(config) if m.prepare is not None]
    if not prepares:
        raise InputError(
            f"{type(config).__name__} is one-shot: "
            "call ql.quantize(model, config) instead of prepare"
        )
    source = checkpoint.source_of(model)
    summary = QuantSummary(model_bytes_before=state_bytes(model)[0])
    target = model if inplace else copy.deepcopy(model)
    to_float32(target, summary)
    linear_like_to_linear(target, summary)
    ctx = QuantContext(config, summary, example_inputs=example_inputs)
    for prepare_one in prepares:
        target = prepare_one(target, ctx)
    set_attrs(target, quantlens_prepared=ctx)
    return finish(target, config, summary, source)


def prepare_qat(model: nn.Module, config: QuantConfig, **kwargs: Any) -> nn.Module:
    """Prepare ``model`` for quantization-aware training (see :func:`prepare`)."""
    return prepare(model, config, **kwargs)


def convert(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Second half of a two-phase method: turn a prepared (calibrated / trained) model into
    the quantized one, in the train/eval mode ``model`` is in (as :func:`quantize` does: a
    model converted straight after training is in train mode; ``ql.convert(qat.eval())``
    for inference)."""
    ctx = getattr(model, "quantlens_prepared", None)
    if ctx is None:
        raise InputError(
            "this model was not prepared by ql.prepare / ql.prepare_qat; prepare it first"
        )
    modes = train_modes(model)
    source = getattr(model, "quantlens_source", None)
    ctx = copy.deepcopy(ctx)  # converting a copy every epoch must not add to one summary
    target = model if inplace else copy.deepcopy(model)
    target.__dict__.pop("quantlens_prepared", None)
    if isinstance(target, torch.fx.GraphModule):
        target.meta.get("_user_preserved_attributes", {}).pop("quantlens_prepared", None)
    for method in methods_of(ctx.config):
        target = (
            method.convert(target, ctx) if method.convert is not None else method.apply(target, ctx)
        )
    ctx.summary.model_bytes_after = state_bytes(target)[0]
    restore_modes(target, modes)
    return finish(target, ctx.config, ctx.summary, source)


def dequantize(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """A float copy of a quantized model (or the model itself, ``inplace``): every quantized
    layer becomes the float layer it replaced, holding the dequantized weights (what the
    quantized layer computes with).

    This is how a checkpoint is re-quantized with another config (``quantlens quantize
    CKPT``): the new rounding starts from already-rounded weights, so its error adds to the
    old one; quantizing the original float model is more accurate. Only methods whose
    layers keep a float activation path (weight-only) can be turned back.

    Args:
        model: a model returned by :func:`quantize`, :func:`convert` or :func:`load`.
        inplace: turn ``model`` itself back (it is no longer a quantized model then)
            instead of a copy.

    Returns:
        The float model (a new one unless ``inplace``); it keeps the record of how to
        rebuild its skeleton, so the result of quantizing it again saves and loads like the
        original.

    Raises:
        InputError: ``model`` is not a quantlens-quantized model, or a method it uses
            (int8 dynamic, static, QAT) cannot be turned back into float.

    Example:
        >>> w8 = ql.load("minilm-w8/")
        >>> w4 = ql.quantize(dequantize(w8), ql.WeightOnly(bits=4, group_size=128))
    """
    config = getattr(model, "quantlens_config", None)
    if config is None:
        raise InputError(
            "this model was not quantized by quantlens; there is nothing to dequantize"
        )
    methods = methods_of(config)
    fixed = sorted(m.name for m in methods if m.dequantize is None)
    undo = [m.dequantize for m in methods if m.dequantize is not None]
    if fixed:
        raise InputError(
            f"a {', '.join(fixed)} model cannot be turned back into float "
            "(its layers run on integer kernels); start from the float model it was made from "
            "(zoo name, Hugging Face folder or module:factory)"
        )
    source = getattr(model, "quantlens_source", None)
    target = model if inplace else copy.deepcopy(model)
    for dequantize_one in undo:
        target = dequantize_one(target)
    for attr in ("quantlens_config", "quantlens_summary"):
        target.__dict__.pop(attr, None)
    if source is not None:
        set_attrs(target, quantlens_source=dict(source))
    return target
