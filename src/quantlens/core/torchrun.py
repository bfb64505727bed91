"""Joining the process group ``torchrun`` describes in the environment, and leaving it
together.

Example:
    >>> with joined_from_env() as joined:   # a plain process: nothing to join
    ...     joined
    False
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
from collections.abc import Iterator

import torch

from quantlens.core.distributed import all_reduce, default_timeout, error_detail
from quantlens.errors import DistributedError


def launched_by_torchrun() -> bool:
    """True when this process was started by ``torchrun`` (or another launcher that sets
    ``RANK``, ``WORLD_SIZE`` and ``MASTER_ADDR``) with more than one process."""
    keys = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    return all(os.environ.get(k) for k in keys) and os.environ["WORLD_SIZE"] != "1"


def init_from_env(*, timeout: float | None = None) -> bool:
    """Join the process group ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``): nccl when every local rank has a GPU
    of its own (rank on GPU ``LOCAL_RANK``), else gloo; connecting and every later
    collective of the group wait at most ``timeout`` seconds (default
    :func:`default_timeout`).

    Returns:
        True if this call initialised a group (the caller destroys it when done), False when
        not launched by torchrun with several processes or a group already exists.

    Raises:
        DistributedError: the other ranks could not be reached in time.

    Example:
        >>> init_from_env()   # a plain process: nothing to join
        False
    """
    dist = torch.distributed
    if not launched_by_torchrun() or not dist.is_available() or dist.is_initialized():
        return False
    seconds = default_timeout() if timeout is None else float(timeout)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= local else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=seconds))
    except Exception as exc:  # the store or the backend could not connect
        raise DistributedError(
            f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}: "
            "joining the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} "
            f"failed ({error_detail(exc)}); "
            "check that every rank started and can reach that address"
        ) from exc
    return True


@contextlib.contextmanager
def joined_from_env(*, timeout: float | None = None) -> Iterator[bool]:
    """:func:`init_from_env` for the length of a ``with`` block: the group this call joined
    is destroyed when the block ends, however it ends.

    Example:
        >>> with joined_from_env() as joined:   # a plain process: nothing to join
        ...     joined
        False
    """
    started = init_from_env(timeout=timeout)
    try:
        yield started
    except BaseException:
        if started:  # the other ranks may never arrive: leave at once
            torch.distributed.destroy_process_group()
        raise
    if started:
        _leave_together(timeout)


def _leave_together(timeout: float | None) -> None:
    """Wait for every rank, free what still holds the group, then destroy it. Without the
    wait and the collection, a rank that finished first sometimes aborted at interpreter
    exit ("terminate called without an active exception" from a gloo thread) while rank 0
    was still writing: about one run in five of a two-rank QAT under load."""
    try:
        all_reduce(torch.zeros(1), "sum", timeout=timeout, what="leaving the process group")
        gc.collect()
    finally:
        torch.distributed.destroy_process_group()
