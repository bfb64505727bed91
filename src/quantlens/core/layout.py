"""Reshaping a tensor so that each scale covers one row: the granularity as a view.

``to_blocks`` turns ``x`` into ``(n_scales, block)`` or ``(*lead, n_groups, group)`` so that
every quantization parameter reduces over the last dimension; ``from_blocks`` undoes it.
Scale and zero-point tensors have the block shape without its last dimension:

- per_tensor: ``()``
- per_channel(axis): ``(x.shape[axis],)``
- per_group(axis, g): ``x.movedim(axis, -1).shape[:-1] + (ceil(L / g),)``
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from quantlens.core.scheme import QScheme
from quantlens.errors import InputError, SchemeError


def normalize_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise InputError(f"axis {axis} is out of range for a tensor with {ndim} dimension(s)")
    return axis % ndim


def to_blocks(x: torch.Tensor, scheme: QScheme) -> torch.Tensor:
    """View ``x`` so that each quantization parameter reduces over the last dimension."""
    if scheme.granularity == "per_tensor":
        return x.reshape(1, -1)
    if x.ndim == 0:
        raise InputError(
            f"{scheme.granularity} quantization needs a tensor with at least one dimension"
        )
    axis = normalize_axis(scheme.axis, x.ndim)
    if scheme.granularity == "per_channel":
        return x.movedim(axis, 0).reshape(x.shape[axis], -1)
    moved = x.movedim(axis, -1)
    length, group = moved.shape[-1], scheme.group_size
    if length % group:
        if not scheme.pad:
            raise SchemeError(
                f"group_size {group} does not divide axis {scheme.axis} of length {length} "
                f"(shape {tuple(x.shape)}); pick a divisor of {length} or pass pad=True"
            )
        moved = F.pad(moved, (0, group - length % group))
    return moved.reshape(*moved.shape[:-1], -1, group)


def from_blocks(blocks: torch.Tensor, scheme: QScheme, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`to_blocks` for a tensor of the original ``shape``."""
    if scheme.granularity == "per_tensor":
        return blocks.reshape(shape)
    axis = normalize_axis(scheme.axis, len(shape))
    if scheme.granularity == "per_channel":
        moved_shape = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
        return blocks.reshape(moved_shape).movedim(0, axis)
    moved_shape = tuple(s for i, s in enumerate(shape) if i != axis) + (shape[axis],)
    flat = blocks.reshape(*moved_shape[:-1], -1)
    if flat.shape[-1] != shape[axis]:
        flat = flat[..., : shape[axis]]
    return flat.movedim(-1, axis)


def qparam_shape(shape: torch.Size, scheme: QScheme) -> tuple[int, ...]:
    """Shape of the scale / zero-point tensors for a tensor of ``shape`` under ``scheme``."""
    if scheme.granularity == "per_tensor":
        return ()
    axis = normalize_axis(scheme.axis, len(shape))
    if scheme.granularity == "per_channel":
        return (shape[axis],)
    lead = tuple(s for i, s in enumerate(shape) if i != axis)
    return lead + (math.ceil(shape[axis] / scheme.group_size),)


def block_minmax(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row minimum and maximum of a blocked tensor (NaN propagates into both).

    ``amin`` + ``amax`` rather than ``aminmax``: on CPU the two reductions measure 1.4x to
    3x faster than the fused one (benchmarks/core.py)."""
    return blocks.amin(dim=-1), blocks.amax(dim=-1)
