"""Scale and zero-point from a range: the affine mapping's two parameters."""

from __future__ import annotations

import torch

from quantlens.core.scheme import QScheme
from quantlens.errors import InputError

FLOAT32_MAX = torch.finfo(torch.float32).max

# The smallest scale we hand out: a zero-width range (an all-zero tensor) still gets a
# finite, positive scale, so quantizing and dequantizing it is exact and never inf/NaN.
MIN_SCALE = torch.finfo(torch.float32).eps


def _as_range(value, name: str) -> torch.Tensor:
    """``value`` as a float32 tensor on a real device (float64 beyond float32's range refused)."""
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(
            f"{name} must be a number or a tensor of numbers, got {type(value).__name__}"
        ) from exc
    if t.is_meta:
        raise InputError(
            f"{name} is on the meta device and holds no values; compute the range from real data"
        )
    if t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{name} must be real numbers, got dtype {t.dtype}")
    if (
        t.dtype == torch.float64
        and t.numel()
        and bool((t.abs() > FLOAT32_MAX).any() & t.isfinite().any())
    ):
        finite = t[t.isfinite()]
        if finite.numel() and float(finite.abs().max()) > FLOAT32_MAX:
            raise InputError(
                f"{name} lies beyond float32's range (±{FLOAT32_MAX:.4g}); rescale the tensor first"
            )
    return t.to(torch.float32)


def compute_qparams(
    min_val: torch.Tensor | float, max_val: torch.Tensor | float, scheme: QScheme
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero-point that map ``[min_val, max_val]`` onto ``[qmin, qmax]``.

    The range is first extended to contain 0, so that 0.0 is exactly representable
    (padding, ReLU outputs and zero weights stay exact).

    - symmetric, signed: ``s = max(|min|, |max|) / qmax``, ``z = 0``
    - symmetric, unsigned: ``z = 2^(b-1)``, ``s = max(|min|, |max|) / (qmax - z)``
    - asymmetric: ``s = (max - min) / (qmax - qmin)``, ``z = clip(qmin - round(min / s))``

    Args:
        min_val, max_val: range per scale (tensors of equal shape, or floats).
        scheme: the target integer grid.

    Returns:
        ``(scale, zero_point)``: float32 and int32 tensors of the shape of ``min_val``.

    Example:
        >>> s, z = compute_qparams(
        ...     torch.tensor(-1.0), torch.tensor(3.0), QScheme(bits=8, symmetric=False)
        ... )
        >>> round(s.item(), 6), z.item()
        (0.015686, 64)
    """
    if not isinstance(scheme, QScheme):
        raise InputError(
            f"scheme must be a QScheme, got {type(scheme).__name__}; build one with "
            "QScheme(bits=...)"
        )
    min_val, max_val = _as_range(min_val, "min_val"), _as_range(max_val, "max_val")
    if min_val.shape != max_val.shape:
        raise InputError(
            f"min_val shape {tuple(min_val.shape)} != max_val shape {tuple(max_val.shape)}"
        )
    if not (torch.isfinite(min_val).all() and torch.isfinite(max_val).all()):
        raise InputError(
            "the range contains NaN or Inf; clean the tensor or use a clipping observer"
        )
    if (min_val > max_val).any():
        raise InputError(
            "min_val is greater than max_val for some channel; pass (min, max) in that order"
        )
    min_neg = torch.clamp(min_val, max=0.0)
    max_pos = torch.clamp(max_val, min=0.0)
    qmin, qmax = scheme.qmin, scheme.qmax
    if scheme.symmetric:
        amax = torch.maximum(-min_neg, max_pos)
        mid = 0 if scheme.signed else (qmax + 1) // 2
        scale = amax / (qmax - mid)
        zero_point = torch.full_like(scale, mid, dtype=torch.int32)
    else:
        scale = (max_pos - min_neg) / (qmax - qmin)
        if not torch.isfinite(
            scale
        ).all():  # max - min overflowed float32: take the width in float64
            scale = ((max_pos.double() - min_neg.double()) / (qmax - qmin)).float()
        scale = torch.clamp(scale, min=MIN_SCALE)
        zero_point = torch.clamp(qmin - torch.round(min_neg / scale), qmin, qmax).to(torch.int32)
    return torch.clamp(scale, min=MIN_SCALE), zero_point
