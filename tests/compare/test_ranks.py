"""``run_comparison`` under a process group: the rows are spread over the ranks (gloo on
127.0.0.1, forked ranks) and every rank ends with the rows of one process, in order."""

from __future__ import annotations

import os

import pytest
from helpers import run_ranks

import quantlens as ql
from quantlens.compare import run_comparison
from quantlens.report.markdown import render_markdown

CONFIGS = {
    "w8": ql.WeightOnly(bits=8),
    "dynamic": ql.Dynamic(),
    "static": ql.Static(observer="minmax", calib_batches=1),
}


def _compare(model, data, on_row=None):
    return run_comparison(
        model,
        CONFIGS,
        data=data,
        calib_data=data[0][:64],
        reps=2,
        warmup=0,
        memory=False,
        on_row=on_row,
    )


def _summary(comparison) -> list[tuple]:
    return [
        (r.name, r.status, r.disk_bytes, r.num_parameters, r.accuracy, round(r.sqnr_db or 0, 4))
        for r in comparison.rows
    ]


def _rank(rank: int, world: int, model, data) -> dict:
    comparison = _compare(model, data)
    return {
        "rows": _summary(comparison),
        "processes": comparison.settings.processes,
        "markdown": render_markdown(comparison),
        "affinity_after": sorted(os.sched_getaffinity(0)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_rows_spread_over_ranks_equal_one_process(world, digits_model, digits_test_128):
    alone = _compare(digits_model, digits_test_128)
    assert alone.settings.processes is None
    results = run_ranks(_rank, world, digits_model, digits_test_128, timeout=120)
    assert all(ok for ok, _ in results), results
    cores = len(os.sched_getaffinity(0))
    for _, got in results:
        assert got["rows"] == _summary(alone)  # names, sizes, accuracy, in the configs' order
        assert got["processes"].startswith(f"{world} processes, {world} on one machine")
        pinned = cores >= world
        assert ("each pinned to" in got["processes"]) is pinned
        assert "Rows measured by" in got["markdown"]
        assert got["affinity_after"] == sorted(os.sched_getaffinity(0))  # restored


def _failing_rank(rank: int, world: int, model, data) -> str:
    def on_row(row, comparison):
        if rank == 1:
            raise RuntimeError("disk full on rank 1")

    _compare(model, data, on_row)
    return "finished"


def test_a_failing_rank_gives_the_others_one_error(digits_model, digits_test_128):
    results = run_ranks(_failing_rank, 2, digits_model, digits_test_128, timeout=60)
    (ok0, err0), (ok1, err1) = results
    assert not ok0 and err0.startswith("DistributedError: rank 0 of 2: rank 1 failed")
    assert "disk full on rank 1" in err0
    assert not ok1 and err1 == "RuntimeError: disk full on rank 1"
