"""Per-layer weight inspection of a checkpoint from its files alone: no skeleton is built and
no code the checkpoint names runs, so it works for any checkpoint, a user's own model class
included.

Each layer is read from the tensors ``model.safetensors`` holds under its name:
quantlens' packed layers are rebuilt empty from the configuration ``quantlens.json`` records
(``"layers"``, one of quantlens' own classes) and given their tensors; PyTorch's quantized
weights are rebuilt as quantized tensors from their integers, scales and zero-points; a
``DynamicLinear``'s int8 weight is scaled per row; float weights are read as they are.

Example:
    >>> rows = inspect_checkpoint("out/")
    >>> print(format_weights(rows))
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from quantlens import checkpoint
from quantlens.analysis.weights import WeightStats, storage, weight_stats
from quantlens.errors import CheckpointError, QuantlensError, error_line
from quantlens.nn import quantized_classes
from quantlens.nn.dynamic_linear import DynamicLinear

__all__ = ["inspect_checkpoint"]

_WEIGHT_KEYS = (".weight_packed", "._packed_params._packed_params", ".weight")


def _layer_classes() -> dict[str, type[nn.Module]]:
    classes = {cls.__name__: cls for cls in quantized_classes().values()}
    classes[DynamicLinear.__name__] = DynamicLinear
    return classes


def _class_for(config: Mapping) -> type[nn.Module] | None:
    """The quantlens layer class a ``"layers"`` entry describes (recorded, or by its keys)."""
    classes = _layer_classes()
    if isinstance(config.get("class"), str):
        return classes.get(config["class"])
    for (
        cls
    ) in classes.values():  # checkpoints that record no class: the one whose config has these keys
        try:
            if set(cls.from_config(dict(config)).config()) == set(config):
                return cls
        except (QuantlensError, KeyError, TypeError, ValueError, RuntimeError):
            continue
    return None


def _rebuilt(name: str, config: Mapping, state: Mapping) -> nn.Module | None:
    cls = _class_for(config)
    if cls is None:
        return None
    layer = cls.from_config({k: v for k, v in config.items() if k != "class"})
    prefix = name + "."
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    layer.load_state_dict(own, strict=True)
    return layer


def _raw_weight(name: str, state: Mapping) -> tuple[torch.Tensor, int, str] | None:
    packed = state.get(f"{name}._packed_params._packed_params")
    weight = (
        packed[0] if isinstance(packed, (tuple, list)) and packed else state.get(f"{name}.weight")
    )
    if not isinstance(weight, torch.Tensor) or weight.numel() == 0:
        return None
    if weight.is_quantized:
        per = (
            "per_channel"
            if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
            else "per_tensor"
        )
        return (
            weight.dequantize().float(),
            weight.element_size() * 8,
            f"{str(weight.dtype).removeprefix('torch.')} {per}",
        )
    scale = state.get(f"{name}.weight_scale")
    if not weight.is_floating_point() and isinstance(
        scale, torch.Tensor
    ):  # DynamicLinear of an older file
        return (
            weight.float() * scale.reshape(-1, *([1] * (weight.ndim - 1))),
            weight.element_size() * 8,
            "int8 per_channel",
        )
    if not weight.is_floating_point():
        return None
    return weight.float(), torch.finfo(weight.dtype).bits, str(weight.dtype).removeprefix("torch.")


def _layer_names(layout: Mapping) -> list[str]:
    names: dict[str, None] = {}
    for key in layout:
        for suffix in _WEIGHT_KEYS:
            if key.endswith(suffix) and key != suffix.lstrip("."):
                names.setdefault(key[: -len(suffix)], None)
                break
    return list(names)


def _bytes_under(name: str, tensors: Mapping[str, torch.Tensor]) -> int:
    prefix, seen, total = name + ".", set(), 0
    for key, t in tensors.items():
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel())
        if key.startswith(prefix) and ident not in seen:
            seen.add(ident)
            total += t.numel() * t.element_size()
    return total


def inspect_checkpoint(directory: str | os.PathLike) -> list[WeightStats]:
    """Weight statistics, storage bits, scheme and bytes of every layer of a checkpoint,
    read from its files (the weights are verified against their recorded SHA-256).

    Args:
        directory: a folder written by :func:`quantlens.save`.

    Returns:
        One :class:`~quantlens.analysis.weights.WeightStats` per layer with a weight, in
        the order the checkpoint stores them; ``kind`` is the quantlens class for packed
        and dynamic layers, else the layer kind the saved summary names.

    Raises:
        CheckpointError: a file is missing, corrupt or malformed (the message names it).
    """
    tensors, meta = checkpoint.read(directory)
    origin = os.path.join(os.fspath(directory), checkpoint.META_FILE)
    state = checkpoint.unflatten_state(tensors, meta["state"], origin=origin)
    configs = meta.get("layers") if isinstance(meta.get("layers"), Mapping) else {}
    summary = checkpoint.read_summary(meta)
    kinds = {r.name: r.kind for r in summary.records} if summary is not None else {}
    rows = []
    for name in _layer_names(meta["state"]):
        kind = kinds.get(name, "unknown")
        config = configs.get(name)
        try:
            layer = _rebuilt(name, config, state) if isinstance(config, Mapping) else None
        except (QuantlensError, KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{origin}: layer {name!r} does not fit its recorded configuration "
                f"({type(exc).__name__}: {error_line(exc)}); save the checkpoint again"
            ) from exc
        if layer is not None:
            w = layer.dequantized_weight().float()
            bits, scheme = storage(layer, w)
            kind = type(layer).__name__
        else:
            found = _raw_weight(name, state)
            if found is None:
                continue
            w, bits, scheme = found
        rows.append(weight_stats(name, kind, w, bits, scheme, _bytes_under(name, tensors)))
    return rows
