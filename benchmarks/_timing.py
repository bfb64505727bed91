"""Timing shared by the benchmark scripts: round-robin rounds, median and p95."""

from __future__ import annotations

import random
import statistics
import time

import torch


def summarize(times: list[float]) -> dict:
    """Median and p95 of per-call times (seconds in, milliseconds out)."""
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(times) * 1e3, "p95_ms": p95 * 1e3, "repeats": len(times)}


def interleaved(
    calls: dict,
    *,
    warmup: int,
    budget_s: float,
    min_rounds: int = 5,
    max_rounds: int = 200,
    runtimes: dict[str, str] | None = None,
) -> dict:
    """Time every call round-robin until the budget is spent (at least ``min_rounds``), so a
    noisy neighbour slows every variant alike and the ratios stay meaningful. The order is
    shuffled every round (seeded): a call right after a similar one finds its caches warm,
    and a fixed order gave that to the same variant every time (the float model timed
    against itself, second in every round, measured 1.13-1.18x "faster" at batch 1).

    ``runtimes`` maps a label to the runtime that executes it (default: one runtime).
    Idle worker threads of one runtime spin for a while after its call (OpenMP and ONNX
    Runtime both do by default), which would slow the next call if another runtime ran it;
    so within a round each runtime's calls run together, after one untimed call of its
    own that lets the previous runtime's threads go idle.

    Runs under ``no_grad`` (optimum-quanto's int4 fails under ``inference_mode``)."""
    runtimes = runtimes or {}
    groups: dict[str, list[str]] = {}
    for label in calls:
        groups.setdefault(runtimes.get(label, "torch"), []).append(label)
    times: dict[str, list[float]] = {label: [] for label in calls}
    order = random.Random(0)
    with torch.no_grad():
        for _ in range(warmup):
            for call in calls.values():
                call()
        start = time.perf_counter()
        for rounds in range(max_rounds):
            if rounds >= min_rounds and time.perf_counter() - start > budget_s:
                break
            for labels in groups.values():
                if len(groups) > 1:
                    calls[labels[0]]()  # settle: the other runtime's threads stop spinning
                for label in order.sample(labels, len(labels)):  # a new order every round
                    t0 = time.perf_counter()
                    calls[label]()
                    times[label].append(time.perf_counter() - t0)
    return {label: summarize(ts) for label, ts in times.items()}
