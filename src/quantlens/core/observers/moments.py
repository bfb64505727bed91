"""The mean-and-standard-deviation observer: ``mean ± k * std`` from streaming moments."""

from __future__ import annotations

import torch

from quantlens.core.distributed import merge_moments
from quantlens.core.observers.base import Observer, register_observer
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError


@register_observer("meanstd")
class MeanStdObserver(Observer):
    """``mean ± k * std`` per tensor or channel, cut to the observed range.

    Streaming mean and variance are merged batch by batch (Chan et al.), in float64.

    Args:
        k: number of standard deviations (3 keeps ~99.7% of a Gaussian).
        axis: see :class:`Observer`.
    """

    def __init__(self, k: float = 3.0, axis: int | None = None) -> None:
        super().__init__(axis)
        if not k > 0:
            raise InputError(f"k must be positive, got {k}")
        self.k = float(k)
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None  # sum of squared deviations

    def _update_rows(self, rows: torch.Tensor, bmin: torch.Tensor, bmax: torch.Tensor) -> None:
        n = rows.shape[1]
        batch = rows.double()
        bmean = batch.mean(1)
        bm2 = (batch - bmean[:, None]).square().sum(1)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, bmean, bm2
            return
        total = self.count + n
        delta = bmean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + bm2 + delta.square() * (self.count * n / total)
        self.count = total

    def _sync_rows(self, rows: int, timeout: float | None) -> None:
        zeros = torch.zeros(rows, dtype=torch.float64)
        mean, m2 = (zeros, zeros) if self.mean is None else (self.mean, self.m2)
        count, self.mean, self.m2 = merge_moments(self.count, mean, m2, timeout=timeout)
        self.count = count

    def _share(self, parts: float) -> None:
        self.count = self.count / parts
        if self.m2 is not None:
            self.m2 = self.m2 / parts

    def _range(self, scheme: QScheme) -> tuple[torch.Tensor, torch.Tensor]:
        std = (self.m2 / max(self.count, 1)).sqrt()
        lo = torch.maximum((self.mean - self.k * std).float(), self.min_val)
        hi = torch.minimum((self.mean + self.k * std).float(), self.max_val)
        return lo, hi
