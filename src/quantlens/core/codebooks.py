"""Non-linear levels: NF4, powers of two (log2) and k-means, each scaled by a block's absmax.

A codebook scheme stores, per element, the index of the nearest level in ``[-1, 1]`` after
dividing by its block's absmax ``s``; dequantizing is ``s * levels[index]``.
"""

from __future__ import annotations

import torch

from quantlens.core.qparams import MIN_SCALE
from quantlens.core.scheme import QScheme
from quantlens.errors import SchemeError

# QLoRA's NF4 construction: quantiles of N(0, 1) at evenly spaced probabilities, 8 on the
# positive side and 7 on the negative side plus an exact 0, scaled to [-1, 1].
_NF4_OFFSET = 0.9677083
KMEANS_ITERATIONS = 20


def nf4_levels() -> torch.Tensor:
    """The 16 normal-float levels in ``[-1, 1]``, ascending, with an exact 0."""
    positive = torch.special.ndtri(torch.linspace(_NF4_OFFSET, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -torch.special.ndtri(torch.linspace(_NF4_OFFSET, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative])
    levels = levels / levels.abs().max()
    return levels.sort().values.float()


def log2_levels(bits: int) -> torch.Tensor:
    """0 and ``±2^-k`` for ``k = 0 .. 2^(bits-1) - 2``: ``2^bits - 1`` levels, ascending."""
    if bits < 2:
        raise SchemeError("the log2 codebook needs bits >= 2 (one level for 0, one per sign)")
    mags = 2.0 ** -torch.arange((1 << (bits - 1)) - 1, dtype=torch.float32)
    return torch.cat([-mags, torch.zeros(1), mags.flip(0)])


def nearest(values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Index of the nearest level for each value; ``levels`` ascending, ``(K,)`` or ``(R, K)``
    with ``values`` ``(R, N)``. Uses the midpoints between levels, so it is O(N log K)."""
    mids = (levels[..., 1:] + levels[..., :-1]) / 2
    if mids.ndim == 1:
        return torch.bucketize(values.contiguous(), mids)
    return torch.searchsorted(mids.contiguous(), values.contiguous())


def lookup(indices: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """The levels that ``indices`` point at (``levels`` ``(K,)`` or one row per block row)."""
    if levels.ndim == 1:
        return levels[indices.long()]
    flat = indices.reshape(levels.shape[0], -1).long()
    return torch.gather(levels, 1, flat).reshape(indices.shape)


def kmeans_levels(
    values: torch.Tensor, k: int, iterations: int = KMEANS_ITERATIONS
) -> torch.Tensor:
    """Lloyd's k-means in one dimension, one codebook per row of ``values`` ``(R, N)``.

    Starts from the row's quantiles; returns ``(R, k)`` ascending centroids."""
    probs = (torch.arange(k, dtype=torch.float32) + 0.5) / k
    sample = values if values.shape[1] <= 65536 else values[:, :: values.shape[1] // 65536 + 1]
    centroids = torch.quantile(sample, probs, dim=1).T.contiguous()  # (R, k)
    for _ in range(iterations):
        idx = nearest(values, centroids)
        sums = torch.zeros_like(centroids).scatter_add_(1, idx, values)
        counts = torch.zeros_like(centroids).scatter_add_(1, idx, torch.ones_like(values))
        centroids = (
            torch.where(counts > 0, sums / counts.clamp(min=1), centroids).sort(dim=1).values
        )
    return centroids


def levels_for(scheme: QScheme, normalized: torch.Tensor | None = None) -> torch.Tensor:
    """The codebook of ``scheme``; k-means fits it to ``normalized`` values (rows = codebooks)."""
    if scheme.codebook == "nf4":
        return nf4_levels()
    if scheme.codebook == "log2":
        return log2_levels(scheme.bits)
    if scheme.codebook == "kmeans":
        return kmeans_levels(normalized, scheme.levels)
    raise SchemeError(f"unknown codebook {scheme.codebook!r}")


def quantize_blocks(
    blocks: torch.Tensor, scheme: QScheme, *, scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize a blocked tensor to codebook indices.

    Returns ``(indices, scale, levels)``: uint8 indices shaped like ``blocks``, the absmax
    scale per block row, and the levels (``(K,)``, or ``(n_channels, K)`` for per-channel
    k-means)."""
    if scale is None:
        scale = blocks.abs().amax(dim=-1).clamp(min=MIN_SCALE)
    # values beyond a given (clipping) scale take the outermost level; clamping also keeps
    # x / s finite when a tiny scale would overflow it (k-means would fit inf/NaN levels)
    normalized = (blocks / scale.unsqueeze(-1)).clamp_(-1.0, 1.0)
    if scheme.codebook == "kmeans":
        rows = (
            normalized.reshape(normalized.shape[0], -1)
            if scheme.granularity == "per_channel"
            else normalized.reshape(1, -1)
        )
        levels = levels_for(scheme, rows)
        idx = nearest(rows, levels).reshape(normalized.shape)
        if scheme.granularity != "per_channel":
            levels = levels[0]
    else:
        levels = levels_for(scheme)
        idx = nearest(normalized, levels)
    return idx.to(torch.uint8), scale, levels
