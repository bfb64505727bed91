"""Observers of the running extremes: the plain min/max and its exponential moving average."""

from __future__ import annotations

import torch

from quantlens.core.distributed import weighted_average
from quantlens.core.observers.base import Observer, register_observer
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError


@register_observer("minmax")
class MinMaxObserver(Observer):
    """The running minimum and maximum of everything seen: no clipping.

    Example:
        >>> obs = MinMaxObserver(); obs.update(torch.tensor([-1.0, 2.0])); obs.range()
        (tensor(-1.), tensor(2.))
    """


@register_observer("moving_average")
class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of each batch's min and max (PyTorch's QAT default).

    ``min <- min + c * (batch_min - min)``; the first batch sets it.

    Args:
        averaging_constant: ``c`` in ``(0, 1]``.
        axis: see :class:`Observer`.
    """

    def __init__(self, averaging_constant: float = 0.01, axis: int | None = None) -> None:
        super().__init__(axis)
        if not 0.0 < averaging_constant <= 1.0:
            raise InputError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        self.averaging_constant = float(averaging_constant)
        self.avg_min: torch.Tensor | None = None
        self.avg_max: torch.Tensor | None = None
        self.batches = 0  # the weight of this average when ranks are merged

    def _update_rows(self, rows: torch.Tensor, bmin: torch.Tensor, bmax: torch.Tensor) -> None:
        self.batches += 1
        if self.avg_min is None:
            self.avg_min, self.avg_max = bmin.clone(), bmax.clone()
        else:
            c = self.averaging_constant
            self.avg_min = self.avg_min + c * (bmin - self.avg_min)
            self.avg_max = self.avg_max + c * (bmax - self.avg_max)

    def _range(self, scheme: QScheme) -> tuple[torch.Tensor, torch.Tensor]:
        return self.avg_min, self.avg_max

    def _sync_rows(self, rows: int, timeout: float | None) -> None:
        local = (
            torch.zeros(2, rows)
            if self.avg_min is None
            else torch.stack([self.avg_min, self.avg_max])
        )
        avg, total = weighted_average(local, self.batches, timeout=timeout)
        self.avg_min, self.avg_max, self.batches = avg[0].float(), avg[1].float(), total

    def _share(self, parts: float) -> None:
        self.batches = self.batches / parts
