"""Report.save on disk: the whole report or the previous one (Ctrl-C while writing, two runs
into one folder), a user's other files kept, stale plots removed, umask permissions."""

import dataclasses
import json
import os
import random
import signal
import stat
import time

import pytest

from quantlens.report import Report


def _version(report: Report, name: str) -> Report:
    comparison = dataclasses.replace(report.comparison, command=f"quantlens compare {name}")
    return Report(
        comparison, max_accuracy_drop=report.max_accuracy_drop, layer_errors=report.layer_errors
    )


def _whole(out) -> str:
    """The run every file in ``out`` comes from (asserting they agree)."""
    command = json.loads((out / "results.json").read_text())["command"]
    assert (
        command in (out / "report.md").read_text() and command in (out / "report.html").read_text()
    )
    assert (out / "results.csv").stat().st_size > 0 and (out / "latency.png").stat().st_size > 0
    return command.split()[-1]


@pytest.mark.slow
def test_save_keeps_other_files_removes_stale_plots_and_follows_the_umask(
    tmp_path, synthetic_report
):
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "sensitivity.png").write_bytes(b"an earlier run's analysis plot")
    old = os.umask(0o002)
    try:
        synthetic_report.save(out)
    finally:
        os.umask(old)
    names = sorted(p.name for p in out.iterdir())
    assert "notes.txt" in names and "sensitivity.png" not in names and "report.html" in names
    assert not [n for n in names if n.startswith(".")]  # no temporary or staging names left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    assert {stat.S_IMODE((out / n).stat().st_mode) for n in names if n != "notes.txt"} == {0o664}


def _fork(work) -> int:
    pid = os.fork()
    if pid == 0:
        # Ctrl-C raises KeyboardInterrupt, as in a terminal, even where this test runs in
        # a background job (which starts with SIGINT ignored)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        code = 1
        try:
            work()
            code = 0
        except KeyboardInterrupt:
            code = 130
        finally:
            os._exit(code)
    return pid


def _exit_code(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.slow
def test_two_runs_into_one_folder_take_turns(tmp_path, synthetic_report):
    out = tmp_path / "same"
    runs = [_fork(lambda n=n: _version(synthetic_report, n).save(out)) for n in ("a", "b")]
    assert [_exit_code(pid) for pid in runs] == [0, 0]
    assert _whole(out) in ("a", "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same"]


@pytest.mark.slow
def test_ctrl_c_while_writing_leaves_the_previous_report_whole(tmp_path, synthetic_report):
    out = tmp_path / "report"
    _version(synthetic_report, "first").save(out)
    rng = random.Random(0)
    interrupted = 0
    for attempt in range(3):
        saved, saved_write = os.pipe()

        def run(a=attempt, done=saved_write):
            for i in range(50):
                _version(synthetic_report, f"run{a}x{i}").save(out)
                os.write(done, b"x")

        pid = _fork(run)
        os.close(saved_write)
        # interrupt after a counted number of whole saves, however slowly the child runs
        for _ in range(rng.randint(1, 5)):
            os.read(saved, 1)
        time.sleep(rng.uniform(0.0, 0.01))
        os.kill(pid, signal.SIGINT)
        code = _exit_code(pid)
        os.close(saved)
        assert code in (0, 130), f"the interrupted run exited with {code}"
        interrupted += code == 130
        assert _whole(out)  # every file from one run: the one before, or one that finished
    assert interrupted >= 1
    # a signal that lands while a staging folder is being removed may leave it: the next save
    # clears it
    _version(synthetic_report, "last").save(out)
    assert _whole(out) == "last" and sorted(p.name for p in tmp_path.iterdir()) == ["report"]
