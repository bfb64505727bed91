"""Activation ranges: per-layer statistics from a calibration pass, histograms, and the
clipping range each observer would choose, with the error each range gives.

Min-max calibration spends the integer grid on the extremes: on a heavy-tailed layer (a
few values far out) most values fall into a handful of levels. This module shows that
per layer: the distribution (min/max, percentiles, mean/std, outliers), a histogram, each
observer's range (:mod:`quantlens.core.observers`) and the SQNR of the layer's activations
quantized with that range, so the better observer is a measurement, not a guess.

By default the *inputs* of Linear/Conv layers are observed: the tensors a static/dynamic
int8 model quantizes (``where="output"`` observes layer outputs instead).

Example:
    >>> ranges = ql.analysis.activation_ranges(model, calib, max_batches=8)
    >>> print(ranges)                      # per layer: range, p99.99, outlier ratio, best observer
    >>> ranges["fc"].best_observer
    'percentile'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from quantlens.analysis.modules import as_float, first_tensor
from quantlens.core.data import count_batches, iter_batches
from quantlens.core.fake_quant import fake_quantize
from quantlens.core.metrics import sqnr_db
from quantlens.core.observers import get_observer
from quantlens.core.progress import track
from quantlens.core.qparams import compute_qparams
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError

__all__ = ["ActivationStats", "ObserverRange", "RangeReport", "activation_ranges"]

DEFAULT_OBSERVERS = ("minmax", "percentile", "mse", "entropy")
PERCENTILES = (0.01, 0.1, 1.0, 50.0, 99.0, 99.9, 99.99)
OBSERVED_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
OUTLIER_SIGMAS = 6.0


@dataclass
class ObserverRange:
    """The clipping range one observer chooses for a layer, and what it costs.

    Attributes:
        observer: the observer's registry name.
        lo, hi: the range.
        sqnr_db: SQNR of the layer's (sampled) activations quantized with this range.
        clipped: fraction of the values more than half a step outside the range (clipped).
    """

    observer: str
    lo: float
    hi: float
    sqnr_db: float
    clipped: float


@dataclass
class ActivationStats:
    """Statistics of one layer's activations over the calibration data.

    Attributes:
        name, kind: the module and its class.
        count: number of values seen.
        min, max, mean, std: exact over every value.
        percentiles: ``{p: value}`` for :data:`PERCENTILES` (from a uniform sample).
        outlier_ratio: ``max|x| / p99.9(|x|)``: how far the extreme is beyond the bulk
            (1-3 is benign; 10+ means min-max wastes most of the grid).
        outlier_fraction: share of values beyond ``mean ± 6 std``.
        hist_counts, hist_edges: a histogram over ``[min, max]``.
        ranges: one :class:`ObserverRange` per observer.
    """

    name: str
    kind: str
    count: int
    min: float
    max: float
    mean: float
    std: float
    percentiles: dict[float, float]
    outlier_ratio: float
    outlier_fraction: float
    hist_counts: list[int] = field(default_factory=list)
    hist_edges: list[float] = field(default_factory=list)
    ranges: list[ObserverRange] = field(default_factory=list)

    @property
    def best_observer(self) -> str | None:
        """The observer whose range gives the highest SQNR on this layer."""
        return max(self.ranges, key=lambda r: r.sqnr_db).observer if self.ranges else None

    def range_of(self, observer: str) -> ObserverRange:
        for r in self.ranges:
            if r.observer == observer:
                return r
        raise KeyError(observer)

    @property
    def heavy_tailed(self) -> bool:
        """True when a clipping observer beats min-max by at least 3 dB (or the tail is 10x the
        bulk)."""
        gain = self.clipping_gain_db
        return self.outlier_ratio >= 10.0 or (gain is not None and gain >= 3.0)

    @property
    def clipping_gain_db(self) -> float | None:
        """SQNR of the best observer minus that of min-max (None without a min-max range)."""
        try:
            minmax = self.range_of("minmax").sqnr_db
        except KeyError:
            return None
        return max(r.sqnr_db for r in self.ranges) - minmax


@dataclass
class RangeReport:
    """Per-layer activation statistics, in the order the layers ran."""

    layers: list[ActivationStats]
    samples: int
    bits: int
    where: str

    def __getitem__(self, name: str) -> ActivationStats:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "samples": self.samples,
            "bits": self.bits,
            "where": self.where,
            "layers": [asdict(x) for x in self.layers],
        }

    @classmethod
    def from_dict(cls, data: dict) -> RangeReport:
        """Rebuild from :meth:`to_dict` (percentile keys may come back from JSON as strings)."""
        layers = []
        for row in data.get("layers", []):
            row = dict(row)
            row["percentiles"] = {float(k): v for k, v in row.get("percentiles", {}).items()}
            row["ranges"] = [ObserverRange(**r) for r in row.get("ranges", [])]
            layers.append(ActivationStats(**row))
        return cls(
            layers,
            int(data.get("samples", 0)),
            int(data.get("bits", 8)),
            data.get("where", "input"),
        )

    def __str__(self) -> str:
        lines = [
            f"activation ranges ({self.where}s, {self.samples} samples, {self.bits}-bit)",
            (
                f"{'layer':<36} {'min':>9} {'max':>9} {'p99.99':>9} {'outlier x':>9} "
                f"{'best':>10} {'gain dB':>7}"
            ),
        ]
        for x in self.layers:
            gain = x.clipping_gain_db
            lines.append(
                f"{x.name[:36]:<36} {x.min:>9.3g} {x.max:>9.3g} "
                f"{x.percentiles.get(99.99, math.nan):>9.3g} {x.outlier_ratio:>9.1f} "
                f"{x.best_observer or '-':>10} {'-' if gain is None else f'{gain:.1f}':>7}"
            )
        return "\n".join(lines)


class _Collector:
    """Streams one layer's activations: exact moments and extremes, a uniform sample, observers."""

    def __init__(self, observers, sample_size: int, generator: torch.Generator) -> None:
        self.observers = {name: get_observer(name) for name in observers}
        self.sample_size = sample_size
        self.gen = generator
        self.count = 0
        self.sum = self.sumsq = 0.0
        self.min, self.max = math.inf, -math.inf
        self.sample = torch.empty(0)
        self.keys = torch.empty(0)

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1)
        if x.numel() == 0 or not torch.isfinite(x).all():
            return
        self.count += x.numel()
        xd = x.double()
        self.sum += float(xd.sum())
        self.sumsq += float(xd.square().sum())
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))
        for obs in self.observers.values():
            obs.update(x)
        keys = torch.rand(x.numel(), generator=self.gen)  # reservoir: keep the smallest random keys
        self.sample, self.keys = torch.cat([self.sample, x]), torch.cat([self.keys, keys])
        if self.sample.numel() > self.sample_size:
            keep = torch.topk(self.keys, self.sample_size, largest=False).indices
            self.sample, self.keys = self.sample[keep], self.keys[keep]

    def finish(self, name: str, kind: str, scheme: QScheme, bins: int) -> ActivationStats:
        mean = self.sum / self.count
        std = math.sqrt(max(self.sumsq / self.count - mean * mean, 0.0))
        sample = torch.cat([self.sample, torch.tensor([self.min, self.max])])
        qs = torch.quantile(sample.double(), torch.tensor(PERCENTILES, dtype=torch.float64) / 100.0)
        abs_p999 = float(torch.quantile(sample.abs().double(), 0.999))
        extreme = max(abs(self.min), abs(self.max))
        ratio = extreme / abs_p999 if abs_p999 > 0 else (1.0 if extreme == 0 else math.inf)
        outliers = (
            float(((sample - mean).abs() > OUTLIER_SIGMAS * std).float().mean()) if std > 0 else 0.0
        )
        counts = torch.histc(
            sample, bins=bins, min=self.min, max=self.max if self.max > self.min else self.min + 1
        )
        edges = torch.linspace(
            self.min, self.max if self.max > self.min else self.min + 1, bins + 1
        )
        ranges = []
        for obs_name, obs in self.observers.items():
            lo, hi = obs.range(scheme)
            scale, zp = compute_qparams(lo, hi, scheme)
            approx = fake_quantize(sample, scale, zp, scheme)
            half_step = (float(hi) - float(lo)) / (2 * (scheme.qmax - scheme.qmin))
            clipped = float(
                ((sample < float(lo) - half_step) | (sample > float(hi) + half_step)).float().mean()
            )
            ranges.append(
                ObserverRange(obs_name, float(lo), float(hi), sqnr_db(sample, approx), clipped)
            )
        return ActivationStats(
            name,
            kind,
            self.count,
            self.min,
            self.max,
            mean,
            std,
            {p: float(v) for p, v in zip(PERCENTILES, qs)},
            ratio,
            outliers,
            [int(c) for c in counts],
            [float(e) for e in edges],
            ranges,
        )


def activation_ranges(
    model: nn.Module,
    data,
    *,
    layers: list[str] | None = None,
    observers=DEFAULT_OBSERVERS,
    bits: int = 8,
    where: str = "input",
    max_batches: int | None = None,
    bins: int = 128,
    sample_size: int = 65536,
    progress: bool | None = None,
) -> RangeReport:
    """Collect per-layer activation statistics over calibration ``data``.

    Args:
        model: a float model.
        data: calibration batches, any form :func:`quantlens.core.data.iter_batches` accepts.
        layers: module names to observe (default: every Linear / Conv layer).
        observers: observer names from :mod:`quantlens.core.observers` whose ranges to compute.
        bits: the activation bit width the ranges are evaluated at (unsigned, asymmetric).
        where: ``"input"`` (what int8 kernels quantize) or ``"output"`` of each layer.
        max_batches: use at most this many batches.
        bins: histogram bins.
        sample_size: values per layer kept (uniformly sampled) for percentiles and SQNR.
        progress: show a progress bar.

    Returns:
        A :class:`RangeReport`.

    Raises:
        InputError: unknown layer names, or no layer to observe.
    """
    if where not in ("input", "output"):
        raise InputError(f"where must be 'input' or 'output', got {where!r}")
    modules = dict(model.named_modules())
    if layers is None:
        layers = [n for n, m in modules.items() if n and isinstance(m, OBSERVED_TYPES)]
    missing = [n for n in layers if n not in modules]
    if missing:
        raise InputError(
            f"no module named {', '.join(map(repr, missing))} in the model; "
            f"layers are module names such as {', '.join(list(modules)[1:6])}"
        )
    if not layers:
        raise InputError(
            "the model has no Linear/Conv layer to observe; pass layers=[module names]"
        )
    scheme = QScheme(bits=bits, symmetric=False)
    gen = torch.Generator().manual_seed(0)
    collectors = {n: _Collector(observers, sample_size, gen) for n in layers}
    order: list[str] = []

    def hook(module, args, output, name):
        t = as_float(first_tensor(args if where == "input" else output))
        if t is not None:
            if name not in order:
                order.append(name)
            collectors[name].add(t)

    handles = [
        modules[n].register_forward_hook(lambda m, a, o, n=n: hook(m, a, o, n)) for n in layers
    ]
    samples = 0
    was_training = model.training
    model.eval()
    try:
        total = count_batches(data)
        total = (
            min(total, max_batches)
            if total is not None and max_batches is not None
            else total or max_batches
        )
        with torch.no_grad():
            for batch in track(
                iter_batches(data, limit=max_batches),
                "collecting ranges",
                total=total,
                enabled=progress,
            ):
                batch.run(model)
                samples += batch.size
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    stats = [collectors[n].finish(n, type(modules[n]).__name__, scheme, bins) for n in order]
    return RangeReport(stats, samples, bits, where)
