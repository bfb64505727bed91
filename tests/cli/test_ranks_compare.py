"""``quantlens compare|sensitivity`` over several processes (forked gloo ranks through
``quantlens.cli.main``): the work is spread, rank 0 alone prints and writes."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from helpers import run_ranks

from quantlens.cli import main

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not built in"
)


def _cli_rank(rank: int, world: int, argv: list[str]) -> list:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return [code, stdout.getvalue(), stderr.getvalue()]


def _both(argv: list[str]) -> tuple[list, list]:
    results = run_ranks(_cli_rank, 2, argv, timeout=120)
    for ok, value in results:
        assert ok, value
    return results[0][1], results[1][1]


@pytest.mark.slow
def test_compare_on_two_ranks_writes_one_report_with_every_row(tmp_path, one_thread):
    out = tmp_path / "report"
    argv = [
        *("compare", "digits-cnn", "--methods", "dynamic,w8,static"),
        *("--reps", "2", "--no-memory", "--json", "--out", str(out)),
    ]
    (code0, out0, err0), (code1, out1, err1) = _both(argv)
    assert code0 == code1 == 0, (err0, err1)
    assert (out1, err1) == ("", "")  # rank 1 measured its rows silently
    rows = [r["name"] for r in json.loads(out0)["rows"]]
    assert rows == ["float", "dynamic", "w8", "static"]
    saved = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in saved["rows"]] == rows
    assert saved["settings"]["processes"].startswith("2 processes, 2 on one machine")
    assert "Rows measured by 2 processes" in (out / "report.md").read_text()


def test_compare_on_two_ranks_refuses_a_full_out_once(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "old.txt").write_text("x")
    (code0, _, err0), (code1, _, err1) = _both(["compare", "digits-cnn", "--out", str(out)])
    assert code0 == 2 and code1 == 1  # bad input on rank 0; rank 1 stops with it
    assert "already exists and is not empty" in err0
    assert "rank 0 failed while checking --out" in err1


@pytest.mark.slow
def test_sensitivity_on_two_ranks_prints_the_ranking_once(one_thread):
    argv = [
        *("sensitivity", "digits-cnn", "--method", "static", "--max-batches", "1"),
        "--json",
    ]
    (code0, out0, err0), (code1, out1, err1) = _both(argv)
    assert code0 == code1 == 0, (err0, err1)
    assert out1 == ""
    names = [r["name"] for r in json.loads(out0)["rows"]]
    assert len(names) >= 4 and len(set(names)) == len(names)
