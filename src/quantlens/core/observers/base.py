"""The observer base class and the registry: running min/max per row, syncing across ranks,
scheme checks, and :func:`get_observer` by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from quantlens.core.distributed import all_reduce, is_distributed, merge_extremes
from quantlens.core.layout import normalize_axis
from quantlens.core.qparams import compute_qparams
from quantlens.core.qtensor import check_finite_float
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError, SchemeError, UnknownNameError

ObserverName = Literal[
    "minmax",
    "moving_average",
    "percentile",
    "mse",
    "entropy",
    "meanstd",
    "auto",
    "histogram",
    "kl",
    "moving_average_minmax",
]
"""The name of a built-in observer or of an alias (``histogram`` = ``mse``, ``kl`` =
``entropy``). A name added with :func:`register_observer` works at run time too; to a type
checker it is a ``str``, so pass it with ``typing.cast(ObserverName, "name")``."""

OBSERVERS: dict[str, type[Observer]] = {}
_ALIASES = {"histogram": "mse", "kl": "entropy", "moving_average_minmax": "moving_average"}
DEFAULT_SCHEME = QScheme(bits=8)


def register_observer(name: str) -> Callable[[type[Observer]], type[Observer]]:
    """Class decorator adding an observer to the registry under ``name``."""

    def decorate(cls: type[Observer]) -> type[Observer]:
        OBSERVERS[name] = cls
        cls.name = name
        return cls

    return decorate


def get_observer(name: str, **kwargs) -> Observer:
    """A new observer by registry name (``"minmax"``, ``"moving_average"``, ``"percentile"``,
    ``"mse"``, ``"entropy"``, ``"meanstd"``; ``"histogram"`` is an alias of ``"mse"`` and
    ``"kl"`` of ``"entropy"``), built with ``kwargs`` (e.g. ``axis=0``).

    Example:
        >>> get_observer("meanstd", k=4.0, axis=0).k
        4.0
    """
    key = _ALIASES.get(name, name)
    if key not in OBSERVERS:
        raise UnknownNameError(f"unknown observer {name!r}; choose one of: {', '.join(OBSERVERS)}")
    return OBSERVERS[key](**kwargs)


class Observer:
    """Base class: tracks the running min/max per row and checks scheme compatibility.

    Args:
        axis: None for one range per tensor, or the channel dimension for one per channel.
    """

    name = "observer"

    def __init__(self, axis: int | None = None) -> None:
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
            raise InputError(f"axis must be None (per tensor) or an int, got {axis!r}")
        self.axis = axis
        self.ndim: int | None = None
        self.min_val: torch.Tensor | None = None  # (R,) float32 running minimum
        self.max_val: torch.Tensor | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(axis={self.axis})"

    # -- streaming -------------------------------------------------------------------------
    def update(self, x: torch.Tensor) -> None:
        """Fold the batch ``x`` (a float tensor, finite) into the statistics."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InputError(
                f"observers take float tensors, got {getattr(x, 'dtype', type(x).__name__)}"
            )
        if x.is_meta:
            raise InputError(
                "observers need values: this batch is on the meta device; run real data"
            )
        if x.numel() == 0:
            return
        if x.dtype == torch.float64:  # beyond float32's range it would turn into inf below
            check_finite_float(x, "batch")
        rows = self._rows(x.detach().float())
        if self.min_val is not None and rows.shape[0] != self.min_val.shape[0]:
            raise InputError(
                f"this batch has {rows.shape[0]} channel(s) along axis {self.axis}, "
                f"earlier ones had {self.min_val.shape[0]}; use one observer per tensor"
            )
        bmin, bmax = rows.amin(dim=1), rows.amax(dim=1)  # NaN/Inf propagate here: no extra pass
        if not (torch.isfinite(bmin).all() and torch.isfinite(bmax).all()):
            raise InputError("the batch holds NaN/Inf values; observers need finite activations")
        if self.min_val is None:
            self.min_val, self.max_val = bmin, bmax
        else:
            self.min_val, self.max_val = (
                torch.minimum(self.min_val, bmin),
                torch.maximum(self.max_val, bmax),
            )
        self._update_rows(rows, bmin, bmax)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        if self.axis is None:
            return x.reshape(1, -1)
        if x.ndim == 0:
            raise InputError("a per-channel observer needs tensors with at least one dimension")
        axis = normalize_axis(self.axis, x.ndim)
        if self.ndim is not None and x.ndim != self.ndim:
            raise InputError(f"this batch has {x.ndim} dimensions, earlier ones had {self.ndim}")
        self.ndim = x.ndim
        return x.movedim(axis, 0).reshape(x.shape[axis], -1)

    def _update_rows(self, rows: torch.Tensor, bmin: torch.Tensor, bmax: torch.Tensor) -> None:
        """Subclass hook: fold ``rows`` ``(R, N)`` with per-row ``bmin``/``bmax`` in."""

    # -- across processes ------------------------------------------------------------------
    def sync(self, *, timeout: float | None = None) -> None:
        """Merge the statistics of every rank of the process group into each rank's observer,
        so that all hold what one observer would after seeing every rank's data: min/max by
        all-reduce MIN/MAX, histograms re-binned to the common range and summed, running
        averages combined by their counts. A collective: every rank must call it, on the
        same observers in the same order. Outside a process group it does nothing.

        Args:
            timeout: seconds to wait for the other ranks (see :mod:`quantlens.core.distributed`).

        Raises:
            DistributedError: another rank failed or did not call it in time.
            InputError: the ranks saw different numbers of channels.

        Example:
            >>> obs = MinMaxObserver(); obs.update(torch.tensor([1.0, 3.0]))
            >>> obs.sync()  # no process group: does nothing
        """
        if not is_distributed():
            return
        n = 0 if self.min_val is None else int(self.min_val.shape[0])
        rows = all_reduce(
            torch.tensor([n, -n if n else -(1 << 40)], dtype=torch.float64), "max", timeout=timeout
        )
        n_max, n_min = int(rows[0]), -int(rows[1])
        if n_max == 0:
            return  # no rank saw data
        if n_min != n_max:
            raise InputError(
                f"the ranks saw {n_min} and {n_max} channel(s) along axis {self.axis}; "
                "every rank must observe the same tensor"
            )
        self._sync_rows(n_max, timeout)
        inf = torch.full((n_max,), float("inf"))
        lo, hi = merge_extremes(
            inf if n == 0 else self.min_val, -inf if n == 0 else self.max_val, timeout=timeout
        )
        self.min_val, self.max_val = lo.float(), hi.float()

    def _sync_rows(self, rows: int, timeout: float | None) -> None:
        """Subclass hook: merge the statistics kept beyond min/max over ``rows`` rows."""

    def share(self, parts: int) -> None:
        """After :meth:`sync`, divide what this observer counts (samples, batches, histogram
        counts) by ``parts`` (the number of ranks), so that a later :meth:`sync` counts the
        statistics every rank now holds once, not ``parts`` times. The range is unchanged.
        For observers synced repeatedly while they keep observing (QAT, each step or epoch).

        Example:
            >>> obs = get_observer("moving_average"); obs.update(torch.ones(4)); obs.share(2)
            >>> obs.batches
            0.5
        """
        if parts < 1:
            raise InputError(f"parts must be a positive number of ranks, got {parts}")
        self._share(float(parts))

    def _share(self, parts: float) -> None:
        """Subclass hook of :meth:`share` (min/max alone need nothing)."""

    # -- results ---------------------------------------------------------------------------
    def range(self, scheme: QScheme | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The clipping range ``(min, max)``: scalars per tensor, ``(channels,)`` per channel."""
        if self.min_val is None:
            raise InputError(
                f"{type(self).__name__} has seen no data; "
                "call update(x) with calibration batches first"
            )
        lo, hi = self._range(scheme or DEFAULT_SCHEME)
        lo, hi = lo.float(), hi.float()
        hi = torch.maximum(lo, hi)
        if self.axis is None:
            return lo.reshape(()), hi.reshape(())
        return lo, hi

    def _range(self, scheme: QScheme) -> tuple[torch.Tensor, torch.Tensor]:
        return self.min_val, self.max_val

    def qparams(self, scheme: QScheme) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero_point)`` for ``scheme`` from :meth:`range`.

        Raises:
            SchemeError: the scheme's granularity or axis does not match the observer's.
        """
        self.check_scheme(scheme)
        lo, hi = self.range(scheme)
        return compute_qparams(lo, hi, scheme)

    def check_scheme(self, scheme: QScheme) -> None:
        """Raise :class:`SchemeError` unless ``scheme`` has this observer's granularity/axis."""
        if self.axis is None and scheme.granularity != "per_tensor":
            raise SchemeError(
                f"this observer is per tensor (axis=None) but the scheme is {scheme.granularity}; "
                "build the observer with axis=<channel dim> for per_channel "
                "(per_group ranges come from the tensor itself: quantize without an observer)"
            )
        if self.axis is not None:
            same = scheme.granularity == "per_channel" and (
                self.ndim is None
                or normalize_axis(scheme.axis, self.ndim) == normalize_axis(self.axis, self.ndim)
            )
            if not same:
                raise SchemeError(
                    f"this observer is per channel (axis={self.axis}) but the scheme is "
                    f"{scheme.describe()}; "
                    f"use a per_channel scheme with axis={self.axis} or axis=None"
                )
