"""The observer that watches with several at once and answers with the chosen one."""

from __future__ import annotations

import torch

from quantlens.core.observers.base import Observer, get_observer, register_observer
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError


@register_observer("auto")
class AutoObserver(Observer):
    """Watches the data with several observers at once and answers with the one chosen
    (``choice``), so a caller can measure what each would cost downstream and keep the best
    (Static int8 picks, per layer, the one whose int8 output is closest to float).

    Args:
        candidates: observer names, the first is the choice until one is set.
        axis: see :class:`Observer`.

    Example:
        >>> obs = AutoObserver(); obs.update(torch.randn(1000)); obs.choice = "entropy"
        >>> obs.range() == obs.observers["entropy"].range()
        True
    """

    CANDIDATES = ("mse", "entropy", "percentile", "minmax")

    def __init__(self, candidates: tuple[str, ...] = CANDIDATES, axis: int | None = None) -> None:
        super().__init__(axis)
        if not candidates or "auto" in candidates:
            raise InputError(f"AutoObserver needs one or more other observers, got {candidates!r}")
        self.observers = {name: get_observer(name, axis=axis) for name in candidates}
        self.choice = next(iter(self.observers))
        self._ranges: dict = {}  # (choice, scheme) -> range, until the next update

    def update(self, x: torch.Tensor) -> None:
        super().update(x)  # checks and the running min/max
        for obs in self.observers.values():
            obs.update(x)
        self._ranges.clear()

    def _sync_rows(self, rows: int, timeout: float | None) -> None:
        for obs in self.observers.values():
            obs.sync(timeout=timeout)
        self._ranges.clear()

    def _share(self, parts: float) -> None:
        for obs in self.observers.values():
            obs._share(parts)

    def _range(self, scheme: QScheme) -> tuple[torch.Tensor, torch.Tensor]:
        if self.choice not in self.observers:
            raise InputError(f"choice {self.choice!r} is not one of {', '.join(self.observers)}")
        key = (self.choice, scheme)
        if key not in self._ranges:
            self._ranges[key] = self.observers[self.choice].range(scheme)
        return self._ranges[key]
