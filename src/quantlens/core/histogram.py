"""Streaming per-row histograms and the range searches that histogram observers run on them.

A :class:`RowHistogram` keeps one histogram of ``bins`` equal bins per row (per channel, or a
single row for per-tensor), each over its own ``[lo, hi]``. When a batch falls outside the
current range, the range grows and the old counts are re-binned, splitting each old bin's
count between the (at most two) new bins it overlaps in proportion to the overlap.

Everything here is vectorised over rows. The searches treat the density inside each bin as
uniform, which makes their error estimates exact integrals rather than samples.
"""

from __future__ import annotations

import math

import torch

from quantlens.core.qparams import compute_qparams
from quantlens.core.scheme import QScheme

_EPS = 1e-12


class RowHistogram:
    """One ``bins``-bin histogram per row, over a per-row range that always contains 0.

    Args:
        bins: number of bins per row.

    Example:
        >>> h = RowHistogram(bins=4); h.add(torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
        >>> h.counts.tolist()
        [[1.0, 1.0, 1.0, 1.0]]
    """

    def __init__(self, bins: int = 2048) -> None:
        self.bins = int(bins)
        self.counts: torch.Tensor | None = None  # (R, bins) float64
        self.lo: torch.Tensor | None = None  # (R,) float64
        self.hi: torch.Tensor | None = None  # (R,) float64

    @property
    def width(self) -> torch.Tensor:
        """Per-row span ``hi - lo`` (never 0)."""
        return (self.hi - self.lo).clamp(min=_EPS)

    def edges(self) -> torch.Tensor:
        """Bin edges, ``(R, bins + 1)``."""
        steps = torch.arange(self.bins + 1, dtype=torch.float64, device=self.lo.device) / self.bins
        return self.lo[:, None] + self.width[:, None] * steps

    def add(
        self, rows: torch.Tensor, bmin: torch.Tensor | None = None, bmax: torch.Tensor | None = None
    ) -> None:
        """Count the values of ``rows`` ``(R, N)``, growing the ranges first if needed
        (``bmin``/``bmax``: the per-row extremes of ``rows``, when already known)."""
        if bmin is None or bmax is None:
            bmin, bmax = rows.amin(dim=1), rows.amax(dim=1)
        bmin = bmin.double().clamp(max=0.0)
        bmax = bmax.double().clamp(min=0.0)
        if self.counts is None:
            self.lo, self.hi = bmin, bmax
            self.counts = torch.zeros(
                rows.shape[0], self.bins, dtype=torch.float64, device=rows.device
            )
        else:
            lo, hi = torch.minimum(self.lo, bmin), torch.maximum(self.hi, bmax)
            if bool((lo < self.lo).any() or (hi > self.hi).any()):
                self.rebin(lo, hi)
        self.counts += self._count(rows)

    def _count(self, rows: torch.Tensor) -> torch.Tensor:
        n_rows, bins = rows.shape[0], self.bins
        inv = (bins / self.width).to(rows.dtype)[:, None]
        idx = (rows - self.lo.to(rows.dtype)[:, None]).mul_(inv).floor_().clamp_(0, bins - 1).long()
        idx += torch.arange(n_rows, device=rows.device)[:, None] * bins
        counts = torch.bincount(idx.reshape(-1), minlength=n_rows * bins)
        return counts.reshape(n_rows, bins).double()

    def rebin(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        """Move the counts onto the wider ranges ``[lo, hi]`` (each row contains its old one):
        each old bin's count is split between the new bins it overlaps."""
        n_rows, bins = self.counts.shape
        old_w = self.width / bins  # (R,)
        new_w = (hi - lo).clamp(min=_EPS) / bins
        left = self.edges()[:, :-1]  # (R, B) left edge of every old bin
        pos = (left - lo[:, None]) / new_w[:, None]  # position in new-bin units
        first = pos.floor().clamp(0, bins - 1)
        frac = (((first + 1) - pos) * (new_w / old_w)[:, None]).clamp(0.0, 1.0)
        second = (first + 1).clamp(max=bins - 1)
        offset = torch.arange(n_rows, device=lo.device)[:, None] * bins
        out = torch.zeros(n_rows * bins, dtype=torch.float64, device=lo.device)
        out.index_add_(0, (first.long() + offset).reshape(-1), (self.counts * frac).reshape(-1))
        out.index_add_(
            0, (second.long() + offset).reshape(-1), (self.counts * (1 - frac)).reshape(-1)
        )
        self.counts, self.lo, self.hi = out.reshape(n_rows, bins), lo, hi

    def quantile(self, q: float) -> torch.Tensor:
        """Per-row value below which a fraction ``q`` of the counts lie (linear inside a bin)."""
        cdf = self.counts.cumsum(dim=1)
        total = cdf[:, -1:].clamp(min=_EPS)
        target = q * total  # (R, 1)
        idx = torch.searchsorted(cdf, target).clamp(max=self.bins - 1)  # (R, 1)
        below = torch.where(
            idx > 0, cdf.gather(1, (idx - 1).clamp(min=0)), torch.zeros_like(target)
        )
        inside = self.counts.gather(1, idx).clamp(min=_EPS)
        frac = ((target - below) / inside).clamp(0.0, 1.0)
        return (self.lo[:, None] + (idx + frac) * (self.width / self.bins)[:, None]).squeeze(1)


def expected_sq_error(
    counts: torch.Tensor,
    edges: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    qmin: int,
    qmax: int,
) -> torch.Tensor:
    """Total squared quantize-dequantize error of a histogram, for many candidate grids.

    Args:
        counts: ``(R, B)`` histogram counts; edges: ``(R, B + 1)`` its bin edges.
        scale, zero_point: ``(K, R)`` candidate parameters (one grid per candidate and row).
        qmin, qmax: integer range of the scheme.

    Returns:
        ``(K, R)``: ``sum_bins count * mean over the bin of (x - x_hat(x))^2``, with a uniform
        density inside each bin. Inside the grid the error is the rounding error, integrated
        exactly (it is periodic in ``x / s``); beyond either end it is the clipping error.
    """
    s = scale.double()[..., None]  # (K, R, 1)
    z = zero_point.double()[..., None]
    gmin, gmax = (qmin - z) * s, (qmax - z) * s
    e = edges[None]  # (1, R, B + 1)
    u = torch.minimum(torch.maximum(e, gmin), gmax) / s
    m = torch.floor(u + 0.5)
    r = u - m
    # Antiderivative of the error: rounding part s^3 * Phi(u), Phi(u) = m / 12 + (r^3 + 1/8) / 3,
    # plus the clipping parts (x - gmin)^3 / 3 below the grid and (x - gmax)^3 / 3 above it.
    anti = s * s * s * (m / 12 + (r * r * r + 0.125) / 3)
    below, above = torch.minimum(e, gmin) - gmin, torch.maximum(e, gmax) - gmax
    anti = anti + (below * below * below + above * above * above) / 3
    per_bin = anti.diff(dim=-1) / (edges.diff(dim=-1)[None].clamp(min=_EPS))  # mean error per bin
    return (per_bin * counts[None]).sum(-1)


def _coarse(hist: RowHistogram, max_elems: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The histogram with neighbouring bins merged (by powers of two, down to 256 bins) until
    ``rows * bins <= max_elems``: ``(counts, edges)``. Keeps per-channel searches fast."""
    counts, factor = hist.counts, 1
    while counts.numel() > max_elems and counts.shape[1] % 2 == 0 and counts.shape[1] > 256:
        counts = counts.reshape(counts.shape[0], -1, 2).sum(-1)
        factor *= 2
    return counts, hist.edges()[:, ::factor]


def mse_search(
    hist: RowHistogram,
    scheme: QScheme,
    *,
    grid: int = 40,
    refine: int = 8,
    max_elems: int = 1 << 15,
    chunk_elems: int = 1 << 21,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipping range per row whose quantization under ``scheme`` has the least error.

    First both ends shrink together by a factor on a geometric grid (``grid`` points from one
    bin to the full range), refined linearly around the best; for asymmetric schemes each end
    is then refined alone with the other fixed. Every candidate is scored by
    :func:`expected_sq_error` under the grid ``compute_qparams`` gives it.

    Returns:
        ``(min, max)`` float64 tensors of shape ``(R,)``.
    """
    lo0, hi0 = hist.lo, hist.hi
    counts, edges = _coarse(hist, max_elems)
    dev = lo0.device
    rows = torch.arange(lo0.shape[0], device=dev)
    step = max(1, chunk_elems // max(1, edges.numel()))

    def pick(lo_c: torch.Tensor, hi_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        errors = []
        for start in range(0, lo_c.shape[0], step):  # (K, R) candidates, in chunks of K
            scale, zp = compute_qparams(
                lo_c[start : start + step].float(), hi_c[start : start + step].float(), scheme
            )
            errors.append(expected_sq_error(counts, edges, scale, zp, scheme.qmin, scheme.qmax))
        k = torch.cat(errors).argmin(dim=0)
        return lo_c[k, rows], hi_c[k, rows]

    alphas = torch.logspace(
        -math.log10(hist.bins), 0, grid, dtype=torch.float64, device=dev
    )  # (G,)
    lo, hi = pick(alphas[:, None] * lo0, alphas[:, None] * hi0)
    best = torch.where(
        hi0 - lo0 > _EPS, (hi - lo) / (hi0 - lo0).clamp(min=_EPS), torch.ones_like(lo0)
    )
    ratio = float(alphas[1] / alphas[0])
    fine = torch.linspace(1 / ratio, ratio, refine, dtype=torch.float64, device=dev)[:, None]
    a = (best * fine).clamp(max=1.0)  # (refine, R)
    lo, hi = pick(torch.cat([lo[None], a * lo0]), torch.cat([hi[None], a * hi0]))
    if not scheme.symmetric:
        ends = torch.linspace(0.6, 1.4, 2 * refine + 1, dtype=torch.float64, device=dev)[:, None]
        lo, hi = pick(torch.maximum(ends * lo, lo0), hi.expand(ends.shape[0], -1))
        lo, hi = pick(lo.expand(ends.shape[0], -1), torch.minimum(ends * hi, hi0))
    return lo, hi


def kl_search(
    counts: torch.Tensor,
    edges: torch.Tensor,
    levels: int,
    *,
    max_elems: int = 1 << 22,
    chunk_elems: int = 1 << 21,
) -> torch.Tensor:
    """TensorRT's entropy calibration on a histogram of ``|x|``: the threshold per row.

    For every candidate end bin ``i`` (from ``levels`` to ``B``), the reference
    ``P`` is the first ``i`` bins with everything beyond added to the last one; the candidate
    ``Q`` merges those ``i`` bins into ``levels`` quantized bins and spreads each back evenly
    over its non-empty source bins. The threshold is the right edge of the ``i`` with least
    ``KL(P || Q)``.

    ``KL`` is evaluated from prefix sums of ``h``, ``[h > 0]`` and ``h log h``, so a candidate
    costs ``O(levels)`` instead of ``O(i)``:
    ``KL = (sum P log P - sum_g merged_g log avg_g (+ last-bin fix)) / N + log(sum_{j<i} h / N)``.

    Args:
        counts: ``(R, B)`` histogram of absolute values; edges: ``(R, B + 1)``.
        levels: quantized bins on one side of 0 (128 for signed 8-bit).
        max_elems: every end bin is a candidate (as in TensorRT) unless
            ``rows * candidates * levels`` would exceed this; then they are strided.

    Returns:
        ``(R,)`` float64 thresholds.
    """
    n_rows, bins = counts.shape
    if bins <= levels:
        return edges[:, -1]
    dev = counts.device
    zero = torch.zeros(n_rows, 1, dtype=torch.float64, device=dev)
    h = counts.double()
    ch = torch.cat([zero, h.cumsum(1)], 1)  # (R, B + 1) prefix sums
    cnz = torch.cat([zero, (h > 0).double().cumsum(1)], 1)
    chl = torch.cat([zero, torch.xlogy(h, h).cumsum(1)], 1)
    total = ch[:, -1:].clamp(min=_EPS)  # (R, 1)
    stride = max(1, math.ceil(n_rows * (bins - levels + 1) * (levels + 1) / max_elems))
    all_i = torch.arange(bins, levels - 1, -stride, device=dev).flip(0)  # always includes i = B
    step = max(1, chunk_elems // (n_rows * (levels + 1)))
    kls = []
    for start in range(0, all_i.numel(), step):
        i = all_i[start : start + step]  # (K,)
        k = torch.arange(levels + 1, device=dev)
        bounds = torch.div(
            k[None] * i[:, None] + levels - 1, levels, rounding_mode="floor"
        )  # (K, L + 1)
        cb, nb = ch[:, bounds], cnz[:, bounds]  # (R, K, L + 1)
        merged, filled = cb.diff(dim=-1), nb.diff(dim=-1)  # (R, K, L)
        avg = merged / filled.clamp(min=1)
        last = h[:, i - 1]  # (R, K) the last kept bin
        outliers = total - ch[:, i]  # (R, K)
        p_last = last + outliers
        q_last = torch.where(last > 0, avg[..., -1], torch.full_like(last, 1e-30))
        p_log_p = chl[:, i - 1] + torch.xlogy(p_last, p_last)
        p_log_q = (
            torch.xlogy(merged, avg).sum(-1)
            - torch.xlogy(last, avg[..., -1])
            + torch.xlogy(p_last, q_last)
        )
        kept = ch[:, i].clamp(min=_EPS)
        kls.append((p_log_p - p_log_q) / total + torch.log(kept / total))
    best = torch.cat(kls, dim=1).argmin(dim=1)  # (R,) first minimum: the smallest threshold
    return edges.gather(1, all_i[best][:, None]).squeeze(1)
