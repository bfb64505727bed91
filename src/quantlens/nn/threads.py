"""How many threads a small kernel call runs on: torch's count, or one.

A matmul of a few tokens (a batch-1 GEMV on packed int4/int8 weights, a dynamic int8 layer
at batch 1) takes tens to hundreds of microseconds, split into one static chunk per
thread. When another process holds one of the cores, the chunk of the thread that core
was given waits for the scheduler -- a whole tick, milliseconds -- and the call takes 10-30x
longer (measured on a 2-core machine under load: int4 g128 4096x4096 at batch 1, 2 threads
p50 24.6 ms, 1 thread 0.98 ms; float32's F.linear, memory-bound with large chunks, barely
moves). On an idle machine the second thread is worth up to 2x.

So each layer times its small calls both ways and keeps the faster: :class:`ThreadChoice`,
per layer and kind of call (kernel path, token count, dtype), alternates the two choices for
its first six calls, then runs the one with the lower median of its recent times, trying
the other again after 16 calls (the interval doubles, up to 1,024, each time the other
loses, so a probe of the slow choice costs a small share of the calls). A choice that slows to
over twice its median is tried against the other on the next call: a core turning busy
is noticed within a few calls. The caller's thread count is restored after every call, also when
the kernel raises.

The policy is a layer attribute, ``layer.thread_policy``: ``"auto"`` (the above, the
default), ``"all"`` (torch's thread count, never changed) or ``"one"`` (small calls on one
thread). Calls outside ``SMALL_WORK`` (multiply-adds) always run on torch's count: below
it torch does not split the work, above it the chunks are long enough for a late thread to
matter less than the second core's help.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Literal, TypeVar

import torch

from quantlens.errors import UnknownNameError

ThreadPolicy = Literal["auto", "all", "one"]
THREAD_POLICIES: tuple[str, ...] = ("auto", "all", "one")
SMALL_WORK = (1 << 16, 1 << 26)  # multiply-adds (tokens x in x out) the policy applies to
_WINDOW = 5  # recent times kept per choice
_EXPLORE = 3  # times of each choice before the first pick
_PROBE_FIRST, _PROBE_MAX = 16, 1024

T = TypeVar("T")


class ThreadChoice:
    """Times one layer's calls of one size on all threads and on one; picks the faster.

    Example:
        >>> choice = ThreadChoice()
        >>> y = choice.run(lambda: torch.ones(3).sum())
    """

    def __init__(self) -> None:
        self.times: dict[bool, deque[float]] = {
            False: deque(maxlen=_WINDOW),
            True: deque(maxlen=_WINDOW),
        }
        self.single = False  # the current pick: one thread?
        self.last = False  # what the previous call ran on
        self.calls = 0
        self.probe_every = _PROBE_FIRST

    def _median(self, single: bool) -> float:
        return _median(self.times[single])

    def next_single(self) -> bool:
        """Whether the next call runs on one thread."""
        one, all_ = self.times[True], self.times[False]
        if len(one) < _EXPLORE or len(all_) < _EXPLORE:  # explore: alternate
            return len(one) <= len(all_)
        mine = self.times[self.single]
        slowed = self.last == self.single and mine[-1] > 2 * self._median(self.single)
        if slowed or self.calls % self.probe_every == 0:
            return not self.single
        return self.single

    def record(self, single: bool, seconds: float) -> None:
        """Add a call's time and update the pick."""
        self.calls += 1
        self.last = single
        self.times[single].append(seconds)
        if len(self.times[True]) < _EXPLORE or len(self.times[False]) < _EXPLORE:
            return
        best = self._median(True) < self._median(False)
        if best != self.single:
            self.single, self.probe_every = best, _PROBE_FIRST
        elif single != self.single:  # a probe of the other choice lost: probe less often
            self.probe_every = min(2 * self.probe_every, _PROBE_MAX)

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the chosen thread count, timed (the caller's count is restored)."""
        threads = torch.get_num_threads()
        single = self.next_single()
        start = time.perf_counter()
        out = run_single(fn) if single and threads > 1 else fn()
        self.record(single, time.perf_counter() - start)
        return out


def _median(values: deque[float]) -> float:
    """The median (the mean of the middle two for an even count): ``statistics.median``
    without its generality, which cost several microseconds per small call."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def run_single(fn: Callable[[], T]) -> T:
    """``fn()`` with ``torch.set_num_threads(1)``, restoring the caller's count after.

    Example:
        >>> run_single(torch.get_num_threads)
        1
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def check_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`THREAD_POLICIES`, else :class:`UnknownNameError`."""
    if policy not in THREAD_POLICIES:
        raise UnknownNameError(
            f"unknown thread policy {policy!r}; valid: {', '.join(THREAD_POLICIES)}"
        )
    return policy


def run_with_policy(layer: Any, key: Hashable, work: int, fn: Callable[[], T]) -> T:
    """Run ``fn`` (one kernel call of ``layer``, ``work`` multiply-adds) under
    ``layer.thread_policy`` (default ``"auto"``). ``key`` names the kind of call (its
    kernel path, token count, dtype...): each kind has its own :class:`ThreadChoice`, kept in
    ``layer._cache`` (dropped with the layer's other cached kernel state).

    Example:
        >>> y = run_with_policy(qlinear, ("int4pack", 1), 4096 * 4096, lambda: qlinear(x))
    """
    policy = getattr(layer, "thread_policy", "auto")
    if policy == "all" or not SMALL_WORK[0] <= work < SMALL_WORK[1]:
        return fn()
    if torch.get_num_threads() == 1:
        return fn()
    if policy == "one":
        return run_single(fn)
    cache_key = ("threads", key)
    choice = layer._cache.get(cache_key)
    if choice is None:
        choice = layer._cache[cache_key] = ThreadChoice()
    return choice.run(fn)
