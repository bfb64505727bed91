"""Observers: range estimators that watch tensors stream by and choose a clipping range.

Every observer has the same three methods:

- ``update(x)``: fold one batch in (call it once per calibration batch);
- ``range(scheme=None) -> (min, max)``: the clipping range it would choose (only the MSE
  and entropy observers use ``scheme``; without one they assume signed 8-bit);
- ``qparams(scheme) -> (scale, zero_point)``: that range through :func:`compute_qparams`.

Under ``torch.distributed``, ``sync()`` merges every rank's statistics so each rank holds
what one observer over all ranks' data would (see :mod:`quantlens.core.distributed`).

``axis=None`` observes per tensor (scalars out); ``axis=k`` observes per channel along
dimension ``k`` (one value per channel, for ``granularity="per_channel"`` schemes).

=================  ==========================  ==============================================
name               class                       range
=================  ==========================  ==============================================
``minmax``         :class:`MinMaxObserver`     running min and max
``moving_average`` :class:`MovingAverageMinMaxObserver`  exponential average of batch min/max
``percentile``     :class:`PercentileObserver` the ``p``-th / ``(100-p)``-th percentiles
``mse``            :class:`MSEObserver`        least quantization MSE over clipped ranges
``entropy``        :class:`EntropyObserver`    TensorRT's KL-divergence threshold
``meanstd``        :class:`MeanStdObserver`    ``mean ± k * std``
=================  ==========================  ==============================================

How to add one: subclass :class:`Observer`, implement ``_update_rows(rows)`` (``rows`` is
``(channels, values)``, float32), ``_range(scheme)`` and, when it keeps more than the running
min/max, ``_sync_rows(rows, timeout)`` (merge its statistics across ranks), then decorate the class
with ``@register_observer("name")``.

Example:
    >>> obs = get_observer("percentile", percentile=99.9)
    >>> for batch in torch.randn(10, 256, 16).unbind(0):
    ...     obs.update(batch)
    >>> scale, zero_point = obs.qparams(QScheme(bits=8))
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from quantlens.core.distributed import (
    all_reduce,
    is_distributed,
    merge_extremes,
    merge_histogram,
    merge_moments,
    weighted_average,
)
from quantlens.core.histogram import RowHistogram, kl_search, mse_search
from quantlens.core.layout import normalize_axis
from quantlens.core.qparams import compute_qparams
from quantlens.core.qtensor import check_finite_float
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError, SchemeError, UnknownNameError

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
                f"this batch has {rows.shape[0]} channel(s) along axis {self.axis}, earlier ones "
                f"had {self.min_val.shape[0]}; use one observer per tensor"
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
            >>> obs.sync()  # no group: no-op
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
                f"{type(self).__name__} has seen no data; call update(x) with calibration batches "
                "first"
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
                    f"{scheme.describe()}; use a per_channel scheme with axis={self.axis} or "
                    "axis=None"
                )


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

    def _update_rows(self, rows, bmin, bmax) -> None:
        self.batches += 1
        if self.avg_min is None:
            self.avg_min, self.avg_max = bmin.clone(), bmax.clone()
        else:
            c = self.averaging_constant
            self.avg_min = self.avg_min + c * (bmin - self.avg_min)
            self.avg_max = self.avg_max + c * (bmax - self.avg_max)

    def _range(self, scheme):
        return self.avg_min, self.avg_max

    def _sync_rows(self, rows, timeout) -> None:
        local = (
            torch.zeros(2, rows)
            if self.avg_min is None
            else torch.stack([self.avg_min, self.avg_max])
        )
        avg, total = weighted_average(local, self.batches, timeout=timeout)
        self.avg_min, self.avg_max, self.batches = avg[0].float(), avg[1].float(), total

    def _share(self, parts) -> None:
        self.batches = self.batches / parts


class _HistogramObserver(Observer):
    """Base of the observers that keep a streaming per-row histogram (see core/histogram.py)."""

    def __init__(self, axis: int | None = None, bins: int = 2048) -> None:
        super().__init__(axis)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 8:
            raise InputError(f"bins must be an integer >= 8, got {bins!r}")
        self.hist = RowHistogram(bins)

    def _update_rows(self, rows, bmin, bmax) -> None:
        self.hist.add(rows, bmin, bmax)

    def _sync_rows(self, rows, timeout) -> None:
        merge_histogram(self.hist, rows, timeout=timeout)

    def _share(self, parts) -> None:
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

    def _range(self, scheme):
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

    def _range(self, scheme):
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

    def _update_rows(self, rows, bmin, bmax) -> None:
        self.hist.add(rows.abs(), torch.zeros_like(bmin), torch.maximum(-bmin, bmax))

    def _range(self, scheme):
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

    def _update_rows(self, rows, bmin, bmax) -> None:
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

    def _sync_rows(self, rows, timeout) -> None:
        zeros = torch.zeros(rows, dtype=torch.float64)
        mean, m2 = (zeros, zeros) if self.mean is None else (self.mean, self.m2)
        count, self.mean, self.m2 = merge_moments(self.count, mean, m2, timeout=timeout)
        self.count = count

    def _share(self, parts) -> None:
        self.count = self.count / parts
        if self.m2 is not None:
            self.m2 = self.m2 / parts

    def _range(self, scheme):
        std = (self.m2 / max(self.count, 1)).sqrt()
        lo = torch.maximum((self.mean - self.k * std).float(), self.min_val)
        hi = torch.minimum((self.mean + self.k * std).float(), self.max_val)
        return lo, hi


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

    def _sync_rows(self, rows, timeout) -> None:
        for obs in self.observers.values():
            obs.sync(timeout=timeout)
        self._ranges.clear()

    def _share(self, parts) -> None:
        for obs in self.observers.values():
            obs._share(parts)

    def _range(self, scheme):
        if self.choice not in self.observers:
            raise InputError(f"choice {self.choice!r} is not one of {', '.join(self.observers)}")
        key = (self.choice, scheme)
        if key not in self._ranges:
            self._ranges[key] = self.observers[self.choice].range(scheme)
        return self._ranges[key]
