"""Spread independent work items over the ranks of a process group and gather the results.

``ql.compare`` rows and per-layer sensitivity passes are independent of each other: under a
process group (``torchrun``) each rank measures every ``world_size``-th item (round-robin,
:func:`my_share`), and :func:`spread` gathers the results on every rank in the original
order, so every rank returns the same value. The gather is built on
:func:`quantlens.core.distributed.all_reduce` and shares its timeout: a rank that failed
turns into one :class:`~quantlens.errors.DistributedError` on the others instead of a hang.

:func:`pinned_cores` splits the cores of a machine between the ranks that run on it, so
latencies measured by several processes at once do not compete for the same cores.

Example:
    >>> spread([1, 2, 3], lambda x: x * x, what="squaring")   # no process group: a plain map
    [1, 4, 9]
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from quantlens.core import distributed
from quantlens.errors import DistributedError

T = TypeVar("T")
R = TypeVar("R")


def my_share(count: int) -> list[int]:
    """The indices of ``count`` items this rank handles: ``rank, rank + world, ...``
    (every index outside a process group).

    Example:
        >>> my_share(3)
        [0, 1, 2]
    """
    return list(range(distributed.rank(), count, distributed.world_size()))


def gather_objects(obj: Any, *, what: str, timeout: float | None = None) -> list[Any]:
    """Every rank's picklable ``obj``, indexed by rank, on every rank (outside a group:
    ``[obj]``). Two collectives: the pickled sizes, then the bytes.

    Args:
        obj: this rank's value.
        what: the step, for the error message (``"gathering the compare rows"``).
        timeout: seconds to wait for the other ranks (default: ``QUANTLENS_SYNC_TIMEOUT``).

    Returns:
        ``[rank 0's obj, rank 1's obj, ...]``.

    Raises:
        DistributedError: another rank did not reach this step in time.

    Example:
        >>> gather_objects({"a": 1}, what="testing")
        [{'a': 1}]
    """
    if not distributed.is_distributed():
        return [obj]
    world, me = distributed.world_size(), distributed.rank()
    data = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8)
    sizes = torch.zeros(world, dtype=torch.int64)
    sizes[me] = data.numel()
    distributed.all_reduce(sizes, "sum", timeout=timeout, what=what)
    width = int(sizes.max())
    table = torch.zeros(world, width, dtype=torch.int32)  # int32: summed safely by every backend
    table[me, : data.numel()] = data.to(torch.int32)
    distributed.all_reduce(table, "sum", timeout=timeout, what=what)
    return [
        pickle.loads(bytes(table[r, : int(sizes[r])].to(torch.uint8).tolist()))
        for r in range(world)
    ]


def gather_outcomes(
    value: Any, error: BaseException | None, *, what: str, timeout: float | None = None
) -> list[Any]:
    """Every rank's ``value`` (:func:`gather_objects`), unless some rank's work failed: this
    rank re-raises its own ``error``, and a rank whose work succeeded raises one
    DistributedError naming the rank that failed (instead of waiting for it until a timeout).

    Args:
        value: this rank's result (ignored when ``error`` is given).
        error: what this rank's work raised, or None.
        what: the work, for the message (``"measuring compare rows"``).
        timeout: seconds to wait for the other ranks.

    Returns:
        ``[rank 0's value, rank 1's value, ...]``.

    Raises:
        DistributedError: another rank failed or did not reach this step in time.

    Example:
        >>> gather_outcomes(3, None, what="counting")
        [3]
    """
    failure = None if error is None else f"{type(error).__name__}: {str(error)[:200]}"
    parts = gather_objects((value, failure), what=f"{what} (gathering)", timeout=timeout)
    if error is not None:
        raise error
    for r, (_, failed) in enumerate(parts):
        if failed is not None:
            raise DistributedError(
                f"rank {distributed.rank()} of {distributed.world_size()}: rank {r} failed "
                f"while {what} ({failed}); see that rank's error"
            )
    return [part for part, _ in parts]


def spread(
    items: Sequence[T], fn: Callable[[T], R], *, what: str, timeout: float | None = None
) -> list[R]:
    """``[fn(item) for item in items]``, each rank computing its :func:`my_share`; the results
    are gathered in the original order on every rank. If ``fn`` raised on some rank, that
    rank re-raises its own error and every other rank raises one DistributedError naming it
    (:func:`gather_outcomes`).

    Args:
        items: the work, the same sequence on every rank.
        fn: measures one item; its result must be picklable.
        what: the work, for error messages (``"measuring sensitivity passes"``).
        timeout: seconds to wait for the other ranks.

    Returns:
        The results in the order of ``items``.

    Example:
        >>> spread(["a", "b"], str.upper, what="shouting")
        ['A', 'B']
    """
    if not distributed.is_distributed():
        return [fn(item) for item in items]
    mine: dict[int, R] = {}
    error: Exception | None = None
    try:
        for i in my_share(len(items)):
            mine[i] = fn(items[i])
    except Exception as exc:  # noqa: BLE001 - re-raised by gather_outcomes
        error = exc
    merged: dict[int, R] = {}
    for part in gather_outcomes(mine, error, what=what, timeout=timeout):
        merged.update(part)
    return [merged[i] for i in range(len(items))]


def _local_peers(timeout: float | None) -> tuple[int, int]:
    """(this rank's index among the ranks on this machine, how many run on it)."""
    hosts = gather_objects(
        socket.gethostname(), what="finding the ranks on each machine", timeout=timeout
    )
    mine = hosts[distributed.rank()]
    local = [r for r, h in enumerate(hosts) if h == mine]
    return local.index(distributed.rank()), len(local)


@contextlib.contextmanager
def pinned_cores(*, timeout: float | None = None) -> Iterator[str | None]:
    """Pin this rank to its own slice of the machine's cores while the block runs, when
    several ranks of the group run on this machine (``os.sched_setaffinity``), with torch's
    thread count set to the slice's size; the affinity and thread count are restored
    afterwards.

    Yields:
        A sentence for the report saying how latency was measured (``None`` outside a
        process group), e.g. ``"2 processes, 1 per machine (...)"`` or
        ``"2 processes, 2 on one machine, each pinned to 4 of its 8 cores (...)"``.

    Example:
        >>> with pinned_cores() as how:
        ...     how is None
        True
    """
    if not distributed.is_distributed():
        yield None
        return
    world = distributed.world_size()
    index, local = _local_peers(timeout)
    if local == 1:
        yield f"{world} processes, 1 per machine (latency timed with the whole machine)"
        return
    getter = getattr(os, "sched_getaffinity", None)
    setter = getattr(os, "sched_setaffinity", None)
    cores = sorted(getter(0)) if getter else []
    each = len(cores) // local
    if setter is None or each < 1:
        yield (
            f"{world} processes, {local} on one machine sharing {len(cores) or 'its'} cores "
            "(not pinned: fewer cores than processes, so their latencies compete)"
        )
        return
    before, threads = set(cores), torch.get_num_threads()
    setter(0, cores[index * each : (index + 1) * each])
    torch.set_num_threads(each)
    try:
        yield (
            f"{world} processes, {local} on one machine, each pinned to {each} of its "
            f"{len(cores)} cores (latency timed on those cores)"
        )
    finally:
        setter(0, before)
        torch.set_num_threads(threads)


__all__ = ["gather_objects", "gather_outcomes", "my_share", "pinned_cores", "spread"]
