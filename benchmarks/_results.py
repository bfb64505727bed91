"""Writing a benchmark's results: the JSON file, stamped with the run's date, then the
generated docs/performance.md page, so the two never disagree."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

import performance_page
import torch


def write_results(path: Path, result: dict, *, indent: int = 1) -> None:
    """Write ``result`` to ``path`` (atomically) with a ``date`` key (UTC, ISO) and
    regenerate docs/performance.md when ``path`` is in benchmarks/results/."""
    result = {"date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(), **result}
    performance_page.write(json.dumps(result, indent=indent) + "\n", Path(path))
    if Path(path).resolve().parent == performance_page.RESULTS:
        performance_page.write(performance_page.render())


def run_info(benchmark: str, threads: int) -> dict:
    """What every results file records about its run: the benchmark, threads, versions,
    machine, OpenMP wait policy and the load average when it started."""
    return {
        "benchmark": benchmark,
        "threads": threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (spin, then sleep)"),
        "load_average_at_start": os.getloadavg()[0],
    }
