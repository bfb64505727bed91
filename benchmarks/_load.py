"""Background load for the benchmarks: one core kept busy by another process.

Users run inference next to other work; a quantized kernel whose threads wait on a core
that another process holds can lose all its speed-up while float32 barely moves. Each
benchmark that takes ``--loads idle,busy-core`` times every case twice: on an otherwise
idle machine, and with :func:`busy_core` running (a child process spinning ``while True:
pass``, pinned to the last CPU so that it always competes with one of the benchmark's
threads).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

LOADS = ("idle", "busy-core")


def parse_loads(text: str) -> tuple[str, ...]:
    """``"idle,busy-core"`` -> the loads, checked against :data:`LOADS`."""
    loads = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in loads if s not in LOADS]
    if bad or not loads:
        raise SystemExit(f"unknown load {bad or text!r}; valid: {', '.join(LOADS)}")
    return loads


@contextlib.contextmanager
def busy_core(enabled: bool = True) -> Iterator[None]:
    """A child process spinning on the last CPU for the duration (nothing when not
    ``enabled``)."""
    if not enabled:
        yield
        return
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        if hasattr(os, "sched_setaffinity"):
            cpus = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(child.pid, {cpus[-1]})
        time.sleep(0.2)  # let it start spinning before timing
        yield
    finally:
        child.kill()
        child.wait(5)
