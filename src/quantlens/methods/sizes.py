"""Byte counts of modules and models, as the quantization summary records them."""

from __future__ import annotations

import torch
from torch import nn


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's own parameters and buffers (not its children's).

    Example:
        >>> module_bytes(torch.nn.Linear(4, 2))
        40
    """
    tensors = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
    return sum(t.numel() * t.element_size() for t in tensors)


def state_bytes(model: nn.Module) -> tuple[int, int]:
    """Bytes and element count of everything in ``model``'s state dict: parameters, buffers
    and the weights PyTorch's quantized modules keep in packed params (which
    ``model.parameters()`` does not show), tied tensors once.

    Example:
        >>> state_bytes(torch.nn.Linear(4, 2))
        (40, 10)
    """
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    total_bytes = total_elems = 0
    for value in model.state_dict(keep_vars=True).values():
        b, n = _value_bytes(value, seen)
        total_bytes += b
        total_elems += n
    return total_bytes, total_elems


def _value_bytes(value: object, seen: set[tuple[int, int, tuple[int, ...]]]) -> tuple[int, int]:
    """(bytes, elements) of a state-dict value: a tensor, quantized tensor or a tuple of them."""
    if isinstance(value, torch.Tensor):
        if value.is_quantized:
            if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                scales, zps = value.q_per_channel_scales(), value.q_per_channel_zero_points()
                extra = scales.numel() * scales.element_size() + zps.numel() * zps.element_size()
            else:
                extra = 8 + 8  # one float64 scale + one int64 zero-point
            return value.numel() * value.element_size() + extra, value.numel()
        storage = value.untyped_storage().data_ptr()
        key = (storage, int(value.storage_offset()), tuple(value.shape))
        if value.numel() and key in seen:  # tied weights count once
            return 0, 0
        seen.add(key)
        return value.numel() * value.element_size(), value.numel()
    if isinstance(value, (tuple, list)):
        parts = [_value_bytes(v, seen) for v in value]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)
    return 0, 0


def float_dtype_of(model: nn.Module) -> torch.dtype | None:
    """The floating dtype of the model's parameters, if any.

    Example:
        >>> float_dtype_of(torch.nn.Linear(4, 2).half())
        torch.float16
    """
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None
