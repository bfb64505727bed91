"""Fault injection against checkpoint writes, in forked child processes: kill -9 at random
points of a save, a full disk (a small RLIMIT_FSIZE), and concurrent writers with a reader.
After each, what is on disk reads as one whole checkpoint, the old or a new one, never a mix.

Every checkpoint here holds a tensor filled with its "version" (recorded in quantlens.json),
so a mix of two saves shows as values that differ from the version read."""

import os
import random
import resource
import signal
import time

import pytest
import torch

from quantlens import checkpoint
from quantlens.errors import CheckpointError

SIZE = 1 << 18  # float32 elements: 1 MB a save


def _meta(version: int) -> dict:
    return {
        "format": "quantlens",
        "format_version": checkpoint.FORMAT_VERSION,
        "method": "weight_only",
        "config": {"method": "weight_only"},
        "state": {"a": {"kind": "tensor"}},
        "version": version,
    }


_FILLED: dict[int, torch.Tensor] = {}


def _filled(versions) -> None:
    """Make the tensors in the parent: a forked child runs no torch kernel (OpenMP's thread
    pool does not survive a fork), it only writes bytes."""
    for v in versions:
        if v not in _FILLED:
            _FILLED[v] = torch.full((SIZE,), float(v))


def _save(target, version: int):
    _filled([version])
    return checkpoint.write(target, {"a": _FILLED[version]}, _meta(version))


def _whole_version(target) -> int:
    tensors, meta = checkpoint.read(target)
    values = tensors["a"].unique().tolist()
    assert values == [float(meta["version"])], (
        f"a mix: version {meta['version']} with values {values[:5]}"
    )
    return meta["version"]


def _fork(work) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            result = work()
            code = result if isinstance(result, int) else 0
        except BaseException:  # noqa: BLE001 - the child's result is its exit code
            code = 1
        finally:
            os._exit(code)  # never returns into the parent's code
    return pid


def _exit_code(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.slow
def test_kill_9_at_random_points_of_a_save_leaves_the_old_or_the_new(tmp_path):
    target = tmp_path / "ckpt"
    _save(target, 0)
    rng = random.Random(0)
    seen = set()
    _filled(range(1, 21))
    for _kill in range(6):
        done_read, done_write = os.pipe()

        def writer(done=done_write):
            for j in range(1000):
                _save(target, 1 + j % 20)
                os.write(done, b"x")

        pid = _fork(writer)
        os.close(done_write)
        # Kill after a random number of whole saves (and a little more), however slowly
        # the machine schedules the child.
        for _ in range(rng.randint(1, 12)):
            os.read(done_read, 1)
        time.sleep(rng.uniform(0.0, 0.02))
        os.kill(pid, signal.SIGKILL)
        assert _exit_code(pid) == -signal.SIGKILL
        os.close(done_read)
        seen.add(_whole_version(target))
    assert len(seen) > 2  # the kills landed in different saves
    _save(target, 99)  # the next save clears what the killed ones left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert _whole_version(target) == 99


def test_a_full_disk_keeps_the_old_checkpoint_and_says_so_in_one_line(tmp_path):
    target = tmp_path / "ckpt"
    _save(target, 1)
    _filled([2])
    read_fd, write_fd = os.pipe()

    def fill_the_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(
            resource.RLIMIT_FSIZE, (SIZE, resource.getrlimit(resource.RLIMIT_FSIZE)[1])
        )
        try:
            _save(target, 2)  # 1 MB: over the limit
        except CheckpointError as exc:
            os.write(write_fd, str(exc).encode())
            return 3
        return 0

    pid = _fork(fill_the_disk)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        message = pipe.read()
    assert _exit_code(pid) == 3
    assert "File too large" in message and "unchanged" in message and "\n" not in message
    assert _whole_version(target) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.slow
def test_concurrent_writers_take_turns_and_readers_never_see_a_mix(tmp_path):
    target = tmp_path / "ckpt"
    _save(target, 0)
    _filled(w * 100 + j for w in (1, 2) for j in range(1, 16))
    # Each save waits for one read to pass it a token, so the reads overlap the saves
    # however the scheduler runs the three processes.
    gates = {w: os.pipe() for w in (1, 2)}

    def write(w: int) -> None:
        for j in range(1, 16):
            os.read(gates[w][0], 1)
            _save(target, w * 100 + j)

    writers = {_fork(lambda w=w: write(w)): w for w in (1, 2)}
    for read_end, _ in gates.values():
        os.close(read_end)
    reads, versions, codes = 0, set(), {}
    while len(codes) < len(writers):
        versions.add(_whole_version(target))
        reads += 1
        for pid, w in writers.items():
            if pid in codes:
                continue
            if reads <= 15:
                os.write(gates[w][1], b"x")
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[pid] = os.waitstatus_to_exitcode(status)
    for _, write_end in gates.values():
        os.close(write_end)
    assert list(codes.values()) == [0, 0]
    assert reads >= 15 and len(versions) > 2
    assert _whole_version(target) in (115, 215)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
