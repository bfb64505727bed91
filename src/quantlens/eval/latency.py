"""Inference latency: warm-up, repeated timed calls, median / p95 and throughput.

Times one batch through the model ``reps`` times after ``warmup`` untimed calls, under a
fixed number of intra-op threads (restored afterwards), in ``torch.inference_mode``.
Latency depends on the machine and on what else runs on it: compare models measured in
the same run (ratios), not numbers from different machines.

Example:
    >>> r = measure_latency(model, torch.rand(64, 1, 8, 8), reps=50, threads=1)
    >>> r.median_ms, r.p95_ms, r.items_per_s
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from quantlens.core.data import Batch, first_batch
from quantlens.core.progress import track
from quantlens.errors import InputError

DEFAULT_WARMUP = 3
DEFAULT_REPS = 20


@dataclass(frozen=True)
class LatencyResult:
    """Timing of one model on one batch.

    Attributes:
        median_ms: median wall time of one call, milliseconds.
        p95_ms: 95th percentile (nearest rank), milliseconds.
        mean_ms: mean, milliseconds.
        items_per_s: ``batch_size / median`` samples per second.
        batch_size: samples per call.
        reps: timed calls; warmup: untimed calls before them.
        threads: ``torch.get_num_threads()`` during the measurement.
        times_ms: every timed call, in order.
    """

    median_ms: float
    p95_ms: float
    mean_ms: float
    items_per_s: float
    batch_size: int
    reps: int
    warmup: int
    threads: int
    times_ms: tuple[float, ...] = field(default=(), repr=False)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank: a value that was measured.

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 95)
        4.0
    """
    if not values:
        raise InputError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]


@contextlib.contextmanager
def num_threads(threads: int | None):
    """Run the block with ``torch.set_num_threads(threads)``; None leaves it as it is."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def as_batch(inputs) -> Batch:
    """A :class:`Batch` from a Batch, a tensor, a tuple of positional inputs, a dict, or data."""
    if isinstance(inputs, Batch):
        return inputs
    if isinstance(inputs, torch.Tensor):
        return Batch(args=(inputs,))
    if (
        isinstance(inputs, tuple)
        and all(isinstance(t, torch.Tensor) for t in inputs)
        and len(inputs) != 2
    ):
        return Batch(args=inputs)
    return first_batch(inputs)


def measure_latency(
    model: nn.Module,
    inputs,
    *,
    warmup: int = DEFAULT_WARMUP,
    reps: int = DEFAULT_REPS,
    threads: int | None = None,
    progress: bool | None = None,
    description: str = "timing",
) -> LatencyResult:
    """Time ``model`` on one batch of ``inputs``.

    Args:
        model: the model (put in eval mode for the measurement).
        inputs: a tensor, a tuple of positional input tensors, a :class:`Batch`, or any data
            form ``iter_batches`` accepts (its first batch is used).
        warmup: untimed calls first (allocators, caches, lazy kernel selection).
        reps: timed calls, at least 1.
        threads: intra-op threads for the measurement (None: the current setting).
        progress: show a progress bar (default: when stderr is a terminal).
        description: the progress bar's label.

    Returns:
        A :class:`LatencyResult`.

    Example:
        >>> measure_latency(torch.nn.Linear(8, 8), torch.rand(32, 8), reps=5).reps
        5
    """
    if reps < 1 or warmup < 0:
        raise InputError(f"need reps >= 1 and warmup >= 0, got reps={reps}, warmup={warmup}")
    batch = as_batch(inputs)
    if batch.labels is not None:
        batch = Batch(batch.args, batch.kwargs)
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        with num_threads(threads), torch.inference_mode():
            used_threads = torch.get_num_threads()
            for _ in range(warmup):
                batch.run(model)
            for _ in track(range(reps), description, total=reps, enabled=progress):
                start = time.perf_counter()
                batch.run(model)
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    median = statistics.median(times)
    return LatencyResult(
        median_ms=median,
        p95_ms=percentile(times, 95),
        mean_ms=statistics.fmean(times),
        items_per_s=batch.size / (median / 1e3) if median > 0 else float("inf"),
        batch_size=batch.size,
        reps=reps,
        warmup=warmup,
        threads=used_threads,
        times_ms=tuple(times),
    )
