"""Per-token activation quantization for the dynamic int8 layers: asymmetric 7-bit codes.

Why 7-bit unsigned activations with a per-token zero-point: x86 CPUs without VNNI (AVX2)
multiply uint8 x int8 pairs and add two products in a saturating int16 (``vpmaddubsw``), so
activations in [0, 255] against int8 weights can overflow -- the reason PyTorch's
``reduce_range`` exists. With 128 levels the pair sum stays below 2**15; the per-token
*asymmetric* range wins back what the lost bit costs.
"""

from __future__ import annotations

import torch

ACT_LEVELS = 127  # activations use q in [0, 127]: 7 bits, no int16 pair overflow on AVX2
_EPS = 1e-12


def quantize_activations(
    x2d: torch.Tensor, per_token: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 7-bit activation qparams and the scaled input, before rounding.

    Args:
        x2d: ``(M, K)`` float32 input rows.
        per_token: one scale / zero-point per row (else one for the whole tensor).

    Returns:
        ``(xs, s, z)``: ``xs = x * (1 / s) + z`` ``(M, K)`` (``round(xs)`` is the code in
        [0, 127]),
        ``s`` and ``z`` ``(M, 1)`` or ``(1, 1)`` float32 (``z`` integer-valued).
    """
    if per_token:  # (amin + amax: faster than aminmax(dim=-1) on CPU)
        lo, hi = x2d.amin(dim=-1, keepdim=True), x2d.amax(dim=-1, keepdim=True)  # (M, 1)
    else:
        lo, hi = (t.reshape(1, 1) for t in torch.aminmax(x2d))
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)  # the range holds 0, so zero is exact
    # (ACT_LEVELS - 1) steps: x/s + round(-lo/s) <= 126.5 rounds to <= 127 without a clamp.
    s = ((hi - lo) / (ACT_LEVELS - 1)).clamp_min(_EPS)
    inv = 1.0 / s
    z = torch.round(-lo * inv)
    return torch.addcmul(z, x2d, inv), s, z


def activation_codes(
    x2d: torch.Tensor, per_token: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rounded codes ``q`` in [0, 127] (float), and ``s``, ``z`` of
    :func:`quantize_activations`, so that ``x ~ s * (q - z)``.

    Example:
        >>> q, s, z = activation_codes(torch.randn(4, 64))
        >>> bool(q.max() <= ACT_LEVELS)
        True
    """
    xs, s, z = quantize_activations(x2d, per_token)
    return xs.round_().clamp_(0, ACT_LEVELS), s, z


def activation_int8(x2d: torch.Tensor, per_token: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The codes of :func:`activation_codes` less their zero-point, ``q - z``, as int8: the
    form the int8 GEMM paths use, in four elementwise passes after the min/max.

    ``q`` lies in [0, 127] and ``z`` in [0, 127], so ``q - z`` is an int8 needing no clamp
    beyond the one the range already guarantees, and with the zero-point out of the codes
    the int8 GEMM ``sum (q - z) Wq`` needs no per-row correction afterwards.

    Args:
        x2d: ``(M, K)`` float32 input rows.
        per_token: one scale per row (else one for the whole tensor).

    Returns:
        ``(q, s)``: ``q`` int8 ``(M, K)``, exactly ``activation_codes``' ``q - z``; ``s``
        float32 ``(M, 1)`` or ``(1, 1)`` with ``x ~ s * q``.

    Example:
        >>> q, s = activation_int8(torch.randn(4, 64))
        >>> q.dtype, bool(q.abs().max() <= ACT_LEVELS)
        (torch.int8, True)
    """
    xs, s, z = quantize_activations(x2d, per_token)  # xs = x / s + z, rounds into [0, 127]
    return xs.round_().sub_(z).to(torch.int8), s
