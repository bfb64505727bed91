"""Error metrics between a reference tensor and its approximation.

Every function takes ``(reference, approximation)`` of the same shape (any dtype that
converts to float) and returns a Python float, or a float tensor of one value per row when
``dim`` is given. They are computed in float64 so that tiny errors on large tensors are not
lost to rounding.

Example:
    >>> x = torch.tensor([1.0, -2.0, 3.0])
    >>> sqnr_db(x, x + 0.01) > 40
    True
"""

from __future__ import annotations

import math
from typing import overload

import torch

from quantlens.errors import InputError

__all__ = [
    "cosine_similarity",
    "max_abs_error",
    "mse",
    "prediction_agreement",
    "prediction_rule",
    "sqnr_db",
]


def _pair(
    reference: torch.Tensor, approximation: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(reference, torch.Tensor) or not isinstance(approximation, torch.Tensor):
        raise InputError(
            f"metrics take two tensors, got {type(reference).__name__} and "
            f"{type(approximation).__name__}; convert with torch.as_tensor"
        )
    if reference.shape != approximation.shape:
        raise InputError(
            f"reference shape {tuple(reference.shape)} != approximation shape "
            f"{tuple(approximation.shape)}; compare outputs of the same layer and batch"
        )
    ref = reference.detach().to(torch.float64)
    approx = approximation.detach().to(device=ref.device, dtype=torch.float64)
    return ref, approx


def _rows(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` with ``dim`` as its last dimension and every other one flattened: ``(rows, n)``."""
    if t.ndim == 0:
        raise InputError("per-row metrics need a tensor with at least one dimension")
    if not -t.ndim <= dim < t.ndim:
        raise InputError(f"dim {dim} is out of range for a tensor with {t.ndim} dimension(s)")
    return t.movedim(dim, -1).reshape(-1, t.shape[dim])


def mse(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    """Mean squared error ``mean((reference - approximation)^2)``.

    Example:
        >>> mse(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        2.0
    """
    ref, approx = _pair(reference, approximation)
    if ref.numel() == 0:
        return 0.0
    return float((ref - approx).square().mean())


def max_abs_error(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    """Largest absolute difference ``max |reference - approximation|``.

    Example:
        >>> max_abs_error(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 1.0]))
        1.0
    """
    ref, approx = _pair(reference, approximation)
    if ref.numel() == 0:
        return 0.0
    return float((ref - approx).abs().max())


def sqnr_db(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in decibels.

    ``10 * log10(sum(reference^2) / sum((reference - approximation)^2))``: higher is
    better, about 6 dB per bit for uniform quantization. ``+inf`` when the two tensors are
    identical; ``-inf`` when the reference is all zeros but the approximation is not.

    Example:
        >>> round(sqnr_db(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 4.5])), 2)
        20.0
    """
    ref, approx = _pair(reference, approximation)
    noise = float((ref - approx).square().sum())
    signal = float(ref.square().sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


@overload
def cosine_similarity(
    reference: torch.Tensor, approximation: torch.Tensor, *, dim: None = None, eps: float = ...
) -> float: ...
@overload
def cosine_similarity(
    reference: torch.Tensor, approximation: torch.Tensor, *, dim: int, eps: float = ...
) -> torch.Tensor: ...
def cosine_similarity(
    reference: torch.Tensor,
    approximation: torch.Tensor,
    *,
    dim: int | None = None,
    eps: float = 1e-12,
) -> float | torch.Tensor:
    """Cosine of the angle between the two tensors, flattened, or per row along ``dim``.

    Args:
        reference, approximation: tensors of the same shape.
        dim: None to compare the flattened tensors (returns a float); an axis to compare
            each slice along it (returns a float64 tensor with that axis removed, e.g.
            ``dim=-1`` on ``(batch, features)`` gives one value per sample).
        eps: guards zero vectors: two all-zero slices give 1.0, one zero slice gives 0.0.

    Example:
        >>> cosine_similarity(
        ...     torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
        ... )  # doctest: +ELLIPSIS
        0.7071...
    """
    ref, approx = _pair(reference, approximation)
    if dim is None:
        ref, approx = ref.reshape(1, -1), approx.reshape(1, -1)
        out_shape: tuple[int, ...] | None = None
    else:
        out_shape = tuple(s for i, s in enumerate(ref.shape) if i != dim % max(ref.ndim, 1))
        ref, approx = _rows(ref, dim), _rows(approx, dim)
    dot = (ref * approx).sum(-1)
    norm_r, norm_a = ref.norm(dim=-1), approx.norm(dim=-1)
    cos = dot / (norm_r * norm_a).clamp(min=eps)
    both_zero = (norm_r <= eps) & (norm_a <= eps)
    cos = torch.where(both_zero, torch.ones_like(cos), cos).clamp(-1.0, 1.0)
    if out_shape is None:
        return float(cos[0])
    return cos.reshape(out_shape)


def prediction_rule(outputs: torch.Tensor) -> str:
    """How a prediction is read from ``outputs``: ``"sign"`` when there is one value per
    prediction (last dimension 1, or a 1-D tensor: a binary classifier's single logit, ``> 0``),
    else ``"argmax"`` over the last dimension.

    Example:
        >>> prediction_rule(torch.zeros(8, 1)), prediction_rule(torch.zeros(8, 10))
        ('sign', 'argmax')
    """
    return "sign" if outputs.ndim == 1 or outputs.shape[-1] == 1 else "argmax"


def prediction_agreement(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    """% of the predictions of ``approximation`` that match ``reference``'s, read by
    :func:`prediction_rule` (argmax over the last dimension, or the sign of a single value).
    NaN for a 0-d tensor (no predictions).

    Example:
        >>> prediction_agreement(
        ...     torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([[0.3, 0.7], [0.4, 0.6]])
        ... )
        50.0
        >>> prediction_agreement(torch.tensor([[0.5], [-1.0]]), torch.tensor([[0.4], [0.2]]))
        50.0
    """
    if reference.ndim == 0:
        return math.nan
    if prediction_rule(reference) == "sign":
        return 100.0 * float(((reference > 0) == (approximation > 0)).float().mean())
    return 100.0 * float((reference.argmax(-1) == approximation.argmax(-1)).float().mean())
