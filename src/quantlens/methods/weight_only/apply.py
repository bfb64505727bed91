"""Applying :class:`WeightOnly`: plan each layer, quantize its weight with the chosen
algorithm, put the quantized layer from :mod:`quantlens.nn.registry` in its place; rebuild
that structure from a checkpoint; turn it back into float."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn

from quantlens.core.qtensor import QTensor
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError
from quantlens.methods.base import (
    SKIP_REASON,
    QuantConfig,
    QuantContext,
    configs_in,
    module_bytes,
    register_method,
    resolve,
)
from quantlens.methods.group_size import group_choice
from quantlens.methods.layer_kinds import DEFAULT_MODULES, default_modules, kind_name
from quantlens.methods.lm_head import head_asked, head_reason, output_heads
from quantlens.methods.weight_only.config import WeightOnly
from quantlens.methods.weight_only.registry import ALGORITHMS, Algorithm
from quantlens.nn.packed import PackedWeight
from quantlens.nn.registry import (
    quantized_class_for,
    quantized_classes,
    standard_class,
    subclass_reason,
)


@dataclass
class _Plan:
    """One layer to replace."""

    name: str
    module: nn.Module
    config: WeightOnly
    scheme: QScheme
    algorithm: Algorithm
    qcls: type[Any]  # the quantized class registered for the module
    choice: str = ""  # why the scheme's group size differs from the config's, for the summary


@dataclass
class _Left:
    """One layer left in float, and why (its summary record)."""

    name: str
    module: nn.Module
    action: Literal["skipped", "float"]
    reason: str
    detail: str = ""
    nbytes: int = 0  # recorded as its bytes before and after


def _why_not(module: nn.Module, qcls: type[Any], scheme: QScheme) -> str | None:
    shape = tuple(_weight(module).shape)
    if getattr(module, "max_norm", None) is not None:
        return "max_norm renormalizes the weight on lookup"
    return qcls.unsupported_reason(scheme, shape)


def _weight(module: nn.Module) -> torch.Tensor:
    """The weight of a layer the layer registry has a class for."""
    return cast(torch.Tensor, module.weight)


def _plan(model: nn.Module, ctx: QuantContext) -> list[_Plan | _Left]:
    """Decide, for every layer with weights, in module order: quantize it (a :class:`_Plan`)
    or leave it in float (a :class:`_Left`)."""
    default = default_modules(model)
    kinds_of = lambda c: default if c.modules is None else c.modules
    ours = [c for c in configs_in(ctx.config) if isinstance(c, WeightOnly)]
    candidate_kinds = {k for c in ours for k in kinds_of(c)}
    if default != DEFAULT_MODULES and any(c.modules is None for c in ours):
        ctx.summary.note(
            f"this model has no Linear layer: WeightOnly quantizes its {', '.join(default)} layers "
            "(pass modules=... to choose the layer kinds)"
        )
    out: list[_Plan | _Left] = []
    heads = output_heads(model)
    for name, module in model.named_modules():
        kind = kind_name(
            standard_class(module, quantized_classes()) or type(module)
        )  # FalconLinear -> "linear"
        cfg = resolve(ctx.config, name)
        qcls = quantized_class_for(module)
        if (
            qcls is None
            or kind not in candidate_kinds
            or (isinstance(cfg, WeightOnly) and kind not in kinds_of(cfg))
        ):
            left = _left_float(name, module, cfg, default)
            if left is not None:
                out.append(left)
            continue
        if cfg is None:
            out.append(_Left(name, module, "skipped", SKIP_REASON))
            continue
        if not isinstance(cfg, WeightOnly):
            continue  # another method's layer: that method records it
        if id(module) in heads and not head_asked(ctx.config, name, cfg):
            why = head_reason(heads[id(module)])
            out.append(_Left(name, module, "float", why, nbytes=module_bytes(module)))
            continue
        scheme = cfg.scheme_for(tuple(_weight(module).shape))
        reason = _why_not(module, qcls, scheme)
        if reason:
            out.append(_Left(name, module, "skipped", reason, detail=scheme.describe()))
            continue
        algorithm = ALGORITHMS[cfg.algorithm]
        if algorithm.kinds is not None and kind not in algorithm.kinds:
            ctx.summary.note(
                f"{algorithm.name} does not apply to {type(module).__name__} layers; "
                f"they use {algorithm.fallback}"
            )
            algorithm = ALGORITHMS[algorithm.fallback]
        length = _weight(module).shape[
            1
        ]  # the grouped axis: in_features / embedding_dim / input channels
        out.append(
            _Plan(
                name,
                module,
                cfg,
                scheme,
                algorithm,
                qcls,
                group_choice(cfg.resolved_group_size, length, scheme),
            )
        )
    return out


def _left_float(
    name: str, module: nn.Module, cfg: QuantConfig | None, default: tuple[str, ...]
) -> _Left | None:
    """A module holding weights of its own that WeightOnly leaves in float because a skip
    pattern matches it, its kind is not selected (``modules=``) or has no weight-only layer;
    None for a module without weights or another method's."""
    if not list(module.parameters(recurse=False)) or isinstance(module, PackedWeight):
        return None
    nbytes = module_bytes(module)
    if cfg is None:
        return _Left(name, module, "skipped", SKIP_REASON, nbytes=nbytes)
    if not isinstance(cfg, WeightOnly):
        return None  # another method's layer: that method records it
    if quantized_class_for(module) is not None:
        kinds = default if cfg.modules is None else cfg.modules
        reason = f"not in modules=({', '.join(kinds)},)"
    else:
        reason = (
            subclass_reason(module, quantized_classes())
            or "WeightOnly has no quantized layer of this kind"
        )
    return _Left(name, module, "float", reason, nbytes=nbytes)


def _record_left(left: _Left, ctx: QuantContext) -> None:
    fields = {
        "method": "weight_only",
        "detail": left.detail,
        "bytes_before": left.nbytes,
        "bytes_after": left.nbytes,
    }
    if left.reason == SKIP_REASON:
        ctx.record_skip(left.name, left.module, **fields)
    else:
        ctx.summary.add(left.name, left.module, left.action, reason=left.reason, **fields)


def _tie_key(p: _Plan) -> tuple:
    """Layers with the same weight tensor under the same scheme get the same codes."""
    weight = _weight(p.module)
    return (id(weight), p.scheme.describe(), tuple(weight.shape))


def _replace(model: nn.Module, replaced: dict[int, nn.Module]) -> nn.Module:
    """Put the new modules in place of the old ones everywhere they appear (shared
    modules included); returns the new root if the root itself was replaced."""
    if id(model) in replaced:
        return replaced[id(model)]
    for parent in list(model.modules()):
        for child_name, child in list(parent._modules.items()):  # duplicates included
            if id(child) in replaced:
                setattr(parent, child_name, replaced[id(child)])
    return model


def apply(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """Replace every selected layer of ``model`` by its weight-only quantized layer (in place;
    returns the new root when ``model`` itself is such a layer)."""
    decisions = _plan(model, ctx)
    plans = [d for d in decisions if isinstance(d, _Plan)]
    stats: dict[str, Any] = {}
    for algorithm in {p.algorithm.name: p.algorithm for p in plans}.values():
        if algorithm.collect is not None:
            names = [p.name for p in plans if p.algorithm is algorithm]
            stats.update(algorithm.collect(model, names, ctx))
    # A weight tied between layers (a language model's input and output embeddings) is
    # quantized once, by a layer that runs the configured algorithm rather than a fallback,
    # and the layers share the packed tensors (a checkpoint holds them once).
    codes: dict[tuple, tuple[QTensor, _Plan]] = {}  # tie key -> (codes, the plan that made them)
    for plan in sorted(plans, key=lambda p: p.algorithm.name != p.config.algorithm):
        if _tie_key(plan) not in codes:
            weight = _weight(plan.module).detach()
            qweight = plan.algorithm.quantize(weight, plan.scheme, stats.get(plan.name))
            codes[_tie_key(plan)] = (qweight, plan)
    built: dict[tuple, nn.Module] = {}
    replaced: dict[int, nn.Module] = {}
    for p in decisions:  # recorded in the model's module order
        if isinstance(p, _Left):
            _record_left(p, ctx)
            continue
        if id(p.module) in replaced:
            continue
        qweight, owner = codes[_tie_key(p)]
        new = p.qcls.from_float(p.module, qweight)
        first = built.setdefault(_tie_key(p), new)
        for key, buffer in first.named_buffers(recurse=False) if first is not new else ():
            if key in new._buffers and new._buffers[key].shape == buffer.shape:
                new._buffers[key] = buffer
        replaced[id(p.module)] = new
        ctx.summary.add(
            p.name,
            p.module,
            "quantized",
            method="weight_only",
            detail=f"{p.scheme.describe()}, {owner.algorithm.name}"
            + (f" ({p.choice})" if p.choice else "")
            + (f", tied to {owner.name}" if owner is not p else ""),
            bytes_before=module_bytes(p.module),
            bytes_after=module_bytes(new),
        )
    refit = [p for p in plans if p.choice]
    if refit:
        sizes = sorted({str(p.config.group_size) for p in refit})
        ctx.summary.note(
            f"group_size {'/'.join(sizes)} does not fit {len(refit)} layer(s); "
            "they use one group per row or a smaller group that divides their input size "
            "(see each layer's detail)"
        )
    return _replace(model, replaced)


def rebuild(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """Give a float skeleton the quantized structure ``apply`` produced (empty buffers), so
    a checkpoint's tensors load into it. Where the checkpoint lists its quantized layers
    (``ctx.saved_layers``: name -> layer config), their saved schemes are used and a
    layer it does not list stays float (a checkpoint written when that layer's group size
    did not fit)."""
    replaced: dict[int, nn.Module] = {}
    saved = ctx.saved_layers
    for p in _plan(model, ctx):
        if isinstance(p, _Left):
            _record_left(p, ctx)
            continue
        if id(p.module) in replaced:
            continue
        if saved is not None:
            if p.name not in saved:
                _record_left(_Left(p.name, p.module, "float", "float in the checkpoint"), ctx)
                continue
            if isinstance(saved[p.name].get("scheme"), dict):
                p.scheme = QScheme.from_dict(saved[p.name]["scheme"])
        new = p.qcls.empty(p.module, p.scheme)
        replaced[id(p.module)] = new
    return _replace(model, replaced)


def dequantize(model: nn.Module) -> nn.Module:
    """Turn every weight-only layer of ``model`` back into the float layer it replaced, with
    the dequantized weight, through each layer's ``to_float()`` (in place; returns the new root
    if the root is such a layer)."""
    replaced: dict[int, nn.Module] = {}
    for module in model.modules():
        if not isinstance(module, PackedWeight) or id(module) in replaced:
            continue
        to_float = getattr(module, "to_float", None)
        if to_float is None:
            raise InputError(
                f"quantlens cannot turn a {type(module).__name__} back into a float layer"
            )
        replaced[id(module)] = to_float()
    return _replace(model, replaced)


register_method(
    "weight_only", WeightOnly, apply=apply, rebuild=rebuild, dequantize=dequantize, order=50
)
