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

One module per family: ``base`` (the :class:`Observer` base class and the registry),
``minmax`` (running extremes), ``histogram`` (percentile, MSE, entropy), ``moments`` (mean ±
k std) and ``auto`` (several at once). Every name is importable from this package.

How to add one: subclass :class:`Observer`, implement ``_update_rows(rows)`` (``rows`` is
``(channels, values)``, float32), ``_range(scheme)`` and, when it keeps more than the running
min/max, ``_sync_rows(rows, timeout)`` (merge its statistics across ranks), then decorate the
class with ``@register_observer("name")`` and import its module here.

Example:
    >>> obs = get_observer("percentile", percentile=99.9)
    >>> for batch in torch.randn(10, 256, 16).unbind(0):
    ...     obs.update(batch)
    >>> scale, zero_point = obs.qparams(QScheme(bits=8))
"""

# isort: off
# The import order is the registry's order (what get_observer's error lists).
from quantlens.core.observers.base import (
    DEFAULT_SCHEME,
    OBSERVERS,
    Observer,
    ObserverName,
    get_observer,
    register_observer,
)
from quantlens.core.observers.minmax import MinMaxObserver, MovingAverageMinMaxObserver
from quantlens.core.observers.histogram import EntropyObserver, MSEObserver, PercentileObserver
from quantlens.core.observers.moments import MeanStdObserver
from quantlens.core.observers.auto import AutoObserver

# isort: on

__all__ = [
    "DEFAULT_SCHEME",
    "OBSERVERS",
    "AutoObserver",
    "EntropyObserver",
    "MSEObserver",
    "MeanStdObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "ObserverName",
    "PercentileObserver",
    "get_observer",
    "register_observer",
]
