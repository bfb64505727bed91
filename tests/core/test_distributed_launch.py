"""Starting and stopping together over ranks: joining torchrun's group from the
environment, one rank acting while the others wait, a broadcast, peer failures."""

from __future__ import annotations

import time

import pytest
import torch
from helpers import run_ranks

from quantlens.core import distributed, torchrun
from quantlens.errors import DistributedError

_TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}


def test_outside_torchrun_no_group_is_started(monkeypatch):
    for key in _TORCHRUN:
        monkeypatch.delenv(key, raising=False)
    assert not torchrun.launched_by_torchrun() and torchrun.init_from_env() is False
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one process: nothing to join
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert not torchrun.launched_by_torchrun()
    assert distributed.on_rank0(lambda: 7, what="answering") == 7


def test_an_unreachable_rank_0_is_one_distributed_error_after_the_timeout(monkeypatch):
    for key, value in _TORCHRUN.items():
        monkeypatch.setenv(key, value)  # port 1: nobody listens there
    monkeypatch.setenv("QUANTLENS_SYNC_TIMEOUT", "1")
    start = time.monotonic()
    with pytest.raises(DistributedError, match=r"^rank 1 of 2: joining the process group at "):
        torchrun.init_from_env()
    assert time.monotonic() - start < 30  # bounded by the timeout, not a hang
    assert not torch.distributed.is_initialized()


def _rank0_acts(rank: int, world: int, fail: bool) -> list:
    def act():
        if fail:
            raise OSError("disk full")
        return "written"

    got = distributed.broadcast(torch.tensor([float(rank + 5)]))
    return [distributed.on_rank0(act, what="saving out/"), got.tolist()]


def test_rank_0_acts_and_the_others_wait_or_fail_with_it(one_thread):
    done = run_ranks(_rank0_acts, 2, False, timeout=60)
    assert done == [(True, ["written", [5.0]]), (True, [None, [5.0]])]  # rank 0's value
    failed = run_ranks(_rank0_acts, 2, True, timeout=60)
    assert failed[0] == (False, "OSError: disk full")
    assert failed[1] == (
        False,
        "DistributedError: rank 1 of 2: rank 0 failed while saving out/; see rank 0's error",
    )


def _own_error(rank: int, world: int) -> str:
    distributed.all_reduce(torch.zeros(1), "sum")  # rank 0 (the store) stays until all joined
    own = pytest.raises(RuntimeError, match="shape mismatch")
    with own, distributed.peer_failures("training"):
        raise RuntimeError("shape mismatch in layer fc")  # this rank's own bug: unchanged
    peer = pytest.raises(DistributedError, match=r"^rank \d of 2: training stopped \(Connection")
    with peer, distributed.peer_failures("training"):
        raise RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:1234")
    return "ok"


def test_peer_failures_turn_only_backend_errors_into_distributed_errors(one_thread):
    assert run_ranks(_own_error, 2, timeout=60) == [(True, "ok"), (True, "ok")]
