"""The steps every entry point shares: checking the inputs, the float32 cast, the methods a
config names in their order, and the attributes a quantized model carries."""

from __future__ import annotations

import torch
from torch import nn

from quantlens.errors import InputError
from quantlens.methods import linear_like
from quantlens.methods.base import (
    Method,
    QuantConfig,
    QuantSummary,
    check_patterns,
    configs_in,
    float_dtype_of,
    method_for_config,
)


def methods_of(config: QuantConfig) -> list[Method]:
    """The methods ``config`` uses (its overrides included), in the order they apply."""
    found = {
        method_for_config(type(c)).name: method_for_config(type(c)) for c in configs_in(config)
    }
    return sorted(found.values(), key=lambda m: m.order)


def check_model(model: object, config: object) -> None:
    """Raise :class:`InputError` unless ``model`` is a module with values and ``config`` a
    quantlens config whose patterns name layers of it."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, QuantConfig):
        raise InputError(
            "expected a quantlens config such as ql.WeightOnly(bits=4) or ql.Dynamic(), "
            f"got {type(config).__name__}"
        )
    meta = next(
        (n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta), None
    )
    if meta is not None:
        raise InputError(
            f"the model's {meta} is on the meta device and holds no values; load its weights first "
            "(e.g. model.to_empty(device='cpu') then load_state_dict, "
            "or from_pretrained without device_map='meta')"
        )
    check_patterns(config, model)


def to_float32(model: nn.Module, summary: QuantSummary) -> None:
    """Cast a float16/bfloat16 model to float32 in place, noting it in ``summary``."""
    dtype = float_dtype_of(model)
    if dtype in (torch.float16, torch.bfloat16):
        model.float()
        summary.note(
            f"the model's weights were {str(dtype).removeprefix('torch.')}; "
            "cast to float32 for quantization"
        )


def linear_like_to_linear(model: nn.Module, summary: QuantSummary) -> None:
    """Turn Linear-like layers (such as GPT-2's Conv1D) into ``nn.Linear`` in place."""
    for text in linear_like.notes(linear_like.make_linear(model)):
        summary.note(text)


def set_attrs(model: nn.Module, **attrs: object) -> None:
    """Set plain (non-tensor, non-module) attributes on ``model``: ``quantlens_config``, ..."""
    for key, value in attrs.items():
        setattr(model, key, value)


def finish(
    model: nn.Module, config: QuantConfig, summary: QuantSummary, source: dict | None
) -> nn.Module:
    """Attach the config, the summary and the float skeleton's source to ``model``."""
    set_attrs(model, quantlens_config=config, quantlens_summary=summary)
    if source is not None:
        set_attrs(model, quantlens_source=source)
    if isinstance(model, torch.fx.GraphModule):  # copy.deepcopy of a GraphModule keeps only these
        keep = {k: v for k, v in vars(model).items() if k.startswith("quantlens_")}
        model.meta.setdefault("_user_preserved_attributes", {}).update(keep)
    return model
