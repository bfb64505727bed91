"""Observers that clip by a streaming per-row histogram: percentile, MSE and entropy (KL)."""

from __future__ import annotations

import torch

from quantlens.core.distributed import merge_histogram
from quantlens.core.histogram import RowHistogram, kl_search, mse_search
from quantlens.core.observers.base import Observer, register_observer
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError


class _HistogramObserver(Observer):
    """Base of the observers that keep a streaming per-row histogram (see core/histogram.py)."""

    def __init__(self, axis: int | None = None, bins: int = 2048) -> None:
        super().__init__(axis)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 8:
            raise InputError(f"bins must be an integer >= 8, got {bins!r}")
        self.hist = RowHistogram(bins)

    def _update_rows(self, rows: torch.Tensor, bmin: torch.Tensor, bmax: torch.Tensor) -> None:
        self.hist.add(rows, bmin, bmax)

    def _sync_rows(self, rows: int, timeout: float | None) -> None:
        merge_histogram(self.hist, rows, timeout=timeout)

    def _share(self, parts: float) -> None:
        if self.hist.counts is not None:
            self.hist.counts = self.hist.counts / parts


@register_observer("percentile")
class PercentileObserver(_HistogramObserver):
    """Clips to the ``percentile``-th and ``(100 - percentile)``-th percentiles.

    Streaming: percentiles are read off a ``bins``-bin histogram (linear inside a bin), so
    memory stays constant however many batches go by.

    Args:
        percentile: in ``(50, 100]``; 99.99 keeps all but 1 in 10,000 values per side.
        axis, bins: see :class:`Observer`; histogram resolution.
    """

    def __init__(
        self, percentile: float = 99.99, axis: int | None = None, bins: int = 2048
    ) -> None:
        super().__init__(axis, bins)
        if not 50.0 < percentile <= 100.0:
            raise InputError(f"percentile must be in (50, 100], e.g. 99.99; got {percentile}")
        self.percentile = float(percentile)

    def _range(self, scheme: QScheme) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.percentile / 100.0
        lo = torch.maximum(self.hist.quantile(1.0 - p).float(), self.min_val)
        hi = torch.minimum(self.hist.quantile(p).float(), self.max_val)
        return lo, hi


@register_observer("mse")
class MSEObserver(_HistogramObserver):
    """The clipping range that minimises the expected quantize-dequantize MSE.

    Scheme-aware: the error of each candidate range is evaluated on the histogram for the
    actual grid that ``compute_qparams`` gives under the scheme (bits, symmetry), so 4-bit
    clips harder than 8-bit. Without a scheme, ``range()`` assumes signed 8-bit.

    Args:
        axis, bins: see :class:`Observer`; histogram resolution.
    """

    def _range(self, scheme: QScheme) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = mse_search(self.hist, scheme)
        return lo.float(), hi.float()


@register_observer("entropy")
class EntropyObserver(_HistogramObserver):
    """TensorRT-style calibration: the threshold ``T`` on ``|x|`` minimising ``KL(P || Q)``
    between the clipped histogram and its quantized version, over a 2048-bin histogram.

    The range is ``[-T, T]`` cut to what was observed. The number of quantized bins follows
    the scheme: ``2^(bits-1)`` per side, or ``2^bits`` for one-sided data under an
    asymmetric scheme.

    Args:
        axis, bins: see :class:`Observer`; histogram resolution (of ``|x|``).
    """

    def _update_rows(self, rows: torch.Tensor, bmin: torch.Tensor, bmax: torch.Tensor) -> None:
        self.hist.add(rows.abs(), torch.zeros_like(bmin), torch.maximum(-bmin, bmax))

    def _range(self, scheme: QScheme) -> tuple[torch.Tensor, torch.Tensor]:
        one_sided = (self.min_val >= 0) & (not scheme.symmetric)
        threshold = torch.empty(
            self.min_val.shape[0], dtype=torch.float64, device=self.min_val.device
        )
        edges = self.hist.edges()
        # The bin at 0 holds every exact zero (ReLU outputs, padding): 0 is always a level, so
        # its spike says nothing about the range, yet it would push the search towards the
        # smallest threshold. Flatten it to its neighbour's height, as TensorRT-style tools do.
        counts = self.hist.counts.clone()
        counts[:, 0] = torch.minimum(counts[:, 0], counts[:, 1])
        for flag in (False, True):
            rows = (one_sided == flag).nonzero().squeeze(1)
            if rows.numel():
                levels = 1 << (scheme.bits if flag else scheme.bits - 1)
                threshold[rows] = kl_search(counts[rows], edges[rows], levels)
        t = threshold.float()
        return torch.maximum(-t, self.min_val), torch.minimum(t, self.max_val)
