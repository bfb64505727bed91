"""A state dict as plain tensors and back: quantized torch tensors split into their
integer representation, scales and zero-points, tuples (PyTorch's packed parameters) into
their elements, every other entry described in JSON (the ``state`` layout of
``quantlens.json``). Nothing is pickled."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch

from quantlens.errors import CheckpointError, error_line
from quantlens.sources import WEIGHTS_FILE
from quantlens.sources.recorded import ORIGIN

_SEP = "::"
_METADATA = _SEP + "metadata"  # per-module state-dict versions (quantized modules need them)


def flatten_state(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a state dict into plain tensors and a JSON description of everything else."""
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    for key, value in state.items():
        layout[key] = _flatten_value(key, value, tensors)
    metadata = getattr(state, "_metadata", None)
    if metadata:
        layout[_METADATA] = {"kind": "metadata", "value": {k: dict(v) for k, v in metadata.items()}}
    return tensors, layout


def _flatten_value(key: str, value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor) and value.is_quantized:
        entry: dict[str, Any] = {
            "kind": "qtensor",
            "dtype": str(value.dtype).removeprefix("torch."),
        }
        tensors[key + _SEP + "int"] = value.int_repr().contiguous()
        if value.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            entry.update(scale=value.q_scale(), zero_point=value.q_zero_point())
        else:
            tensors[key + _SEP + "scales"] = value.q_per_channel_scales().contiguous()
            tensors[key + _SEP + "zero_points"] = value.q_per_channel_zero_points().contiguous()
            entry["axis"] = value.q_per_channel_axis()
        return entry
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().contiguous()
        return {"kind": "tensor"}
    if isinstance(value, (tuple, list)):
        items = [_flatten_value(f"{key}{_SEP}{i}", v, tensors) for i, v in enumerate(value)]
        return {"kind": type(value).__name__, "items": items}
    if isinstance(value, torch.dtype):
        return {"kind": "dtype", "value": str(value).removeprefix("torch.")}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"kind": "value", "value": value}
    raise CheckpointError(
        f"state entry {key!r} is a {type(value).__name__}, which the checkpoint format cannot "
        "store without pickle; give the module a state dict of tensors"
    )


def unflatten_state(
    tensors: Mapping[str, torch.Tensor],
    layout: Mapping[str, Any],
    *,
    origin: str | os.PathLike = ORIGIN,
) -> dict[str, Any]:
    """Inverse of :func:`flatten_state`; a malformed entry raises CheckpointError naming
    ``origin`` (the ``quantlens.json`` the layout came from) and the entry."""
    state = OrderedDict()
    for key, entry in layout.items():
        if key == _METADATA:
            continue
        try:
            state[key] = _unflatten_value(key, entry, tensors)
        except (
            KeyError,
            TypeError,
            ValueError,
            RuntimeError,
            AttributeError,
            RecursionError,
        ) as exc:
            raise CheckpointError(
                f"{origin}: state entry {key!r} is malformed ({type(exc).__name__}: "
                f"{error_line(exc)}); the file was edited or is from another version, save the "
                "checkpoint again"
            ) from exc
    if _METADATA in layout:
        try:
            state._metadata = OrderedDict(layout[_METADATA]["value"])  # read by load_state_dict
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{origin}: the state metadata entry is malformed; save the checkpoint again"
            ) from exc
    return state


def _unflatten_value(key: str, entry: Mapping, tensors: Mapping[str, torch.Tensor]) -> Any:
    kind = entry["kind"]
    if kind == "tensor":
        return _tensor(tensors, key)
    if kind == "qtensor":
        ints = _tensor(tensors, key + _SEP + "int")
        if "axis" in entry:
            scales = _tensor(tensors, key + _SEP + "scales")
            zero_points = _tensor(tensors, key + _SEP + "zero_points")
            return torch._make_per_channel_quantized_tensor(
                ints, scales, zero_points, entry["axis"]
            )
        return torch._make_per_tensor_quantized_tensor(ints, entry["scale"], entry["zero_point"])
    if kind in ("tuple", "list"):
        items = [
            _unflatten_value(f"{key}{_SEP}{i}", e, tensors) for i, e in enumerate(entry["items"])
        ]
        return tuple(items) if kind == "tuple" else items
    if kind == "dtype":
        return getattr(torch, entry["value"])
    if kind == "value":
        return entry["value"]
    raise CheckpointError(
        f"state entry {key!r} has unknown kind {kind!r}; was it written by a newer quantlens?"
    )


def _tensor(tensors: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in tensors:
        raise CheckpointError(
            f"{WEIGHTS_FILE} has no tensor {key!r}; the file is incomplete or from another model"
        )
    return tensors[key]


# --- files -------------------------------------------------------------------------------
