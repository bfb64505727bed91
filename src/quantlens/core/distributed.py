"""Process-group helpers: merge statistics across the ranks of ``torch.distributed``.

quantlens does not start processes itself: ``torchrun`` (or any launcher) starts them and
the caller runs ``torch.distributed.init_process_group`` (gloo on CPU, nccl on GPU). When a
group is initialised, observers (:meth:`quantlens.core.observers.Observer.sync`) combine
what every rank saw through :func:`all_reduce`; outside a group nothing here does anything.

Every collective waits at most ``timeout`` seconds (default: the ``QUANTLENS_SYNC_TIMEOUT``
environment variable, else 300), so a rank that failed before reaching it turns into one
:class:`~quantlens.errors.DistributedError` on the others instead of a hang.

Example:
    >>> t = torch.tensor([3.0])
    >>> all_reduce(t, "max") is t   # no process group: the tensor itself, unchanged
    True
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Iterator

import torch

from quantlens.errors import DistributedError, InputError

DEFAULT_TIMEOUT_S = 300.0
_OPS = ("sum", "min", "max")


_LOCAL_DEPTH = [0]  # > 0 inside local_only()


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a default process group is
    initialised with more than one rank (and the caller is not inside :func:`local_only`).

    Example:
        >>> is_distributed()
        False
    """
    dist = torch.distributed
    return (
        not _LOCAL_DEPTH[0]
        and dist.is_available()
        and dist.is_initialized()
        and dist.get_world_size() > 1
    )


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Inside the block this process works alone, as if no process group existed: no
    statistics are merged, ``rank()`` is 0 and ``world_size()`` 1. For work each rank does
    on its own and whose results are gathered afterwards (a compare row, a sensitivity pass).

    Example:
        >>> with local_only():
        ...     world_size()
        1
    """
    _LOCAL_DEPTH[0] += 1
    try:
        yield
    finally:
        _LOCAL_DEPTH[0] -= 1


def rank() -> int:
    """This process's rank in the default group (0 outside a group)."""
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of ranks in the default group (1 outside a group)."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def default_timeout() -> float:
    """Seconds a collective may wait: ``QUANTLENS_SYNC_TIMEOUT`` if set, else 300.

    Raises:
        InputError: the variable is not a positive number.
    """
    raw = os.environ.get("QUANTLENS_SYNC_TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InputError(
            f"QUANTLENS_SYNC_TIMEOUT must be a positive number of seconds, got {raw!r}"
        )
    return value


def error_detail(exc: BaseException) -> str:
    """The first sentence of a backend error, without gloo's source-location prefix."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    line = re.sub(r"^\[[^\]]*\]\s*", "", line)
    return line.split(". ")[0].rstrip(".")[:160]


def all_reduce(
    tensor: torch.Tensor,
    op: str,
    *,
    timeout: float | None = None,
    what: str = "merging statistics across ranks",
) -> torch.Tensor:
    """Reduce ``tensor`` in place over every rank (``op``: ``"sum"``, ``"min"``, ``"max"``).

    Outside a process group it returns ``tensor`` unchanged. The tensor is moved to the
    device the group's backend needs (CUDA for nccl) and back.

    Args:
        tensor: the local statistic; every rank must pass the same shape and dtype.
        op: the reduction.
        timeout: seconds to wait for the other ranks (default :func:`default_timeout`).
        what: what the collective is for, in the error message.

    Returns:
        ``tensor``, now holding the reduction over all ranks.

    Raises:
        DistributedError: the collective failed or timed out (another rank failed).

    Example:
        >>> all_reduce(torch.tensor([1.0, 2.0]), "sum")   # one process: unchanged
        tensor([1., 2.])
    """
    if op not in _OPS:
        raise InputError(f"op must be one of {', '.join(_OPS)}, got {op!r}")
    if not is_distributed():
        return tensor
    dist = torch.distributed
    seconds = default_timeout() if timeout is None else float(timeout)
    backend = str(dist.get_backend()).lower()
    work_tensor = tensor
    if backend == "nccl" and tensor.device.type != "cuda":
        work_tensor = tensor.to(f"cuda:{torch.cuda.current_device()}")
    elif backend == "gloo" and tensor.device.type != "cpu":
        work_tensor = tensor.cpu()  # gloo reduces on the CPU
    reduce_op = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op]
    try:
        work = dist.all_reduce(work_tensor, op=reduce_op, async_op=True)
        work.wait(timeout=datetime.timedelta(seconds=seconds))
    except Exception as exc:  # gloo and nccl raise RuntimeError and its subclasses
        raise DistributedError(
            f"rank {dist.get_rank()} of {dist.get_world_size()}: {what} "
            f"failed ({error_detail(exc)}); another rank failed or did not reach this step within "
            f"{seconds:g} s: see that rank's error"
        ) from exc
    if work_tensor is not tensor:
        tensor.copy_(work_tensor)
    return tensor


_PEER_FAILED = re.compile(r"gloo|nccl|connection|timed out|timeout|peer", re.IGNORECASE)


@contextlib.contextmanager
def peer_failures(during: str) -> Iterator[None]:
    """Turn a collective that failed because another rank did (gloo's "Connection closed by
    peer", a backend timeout) inside the block into one :class:`DistributedError`; other
    errors pass through unchanged. Outside a process group it does nothing.

    Args:
        during: what the block does, for the message (``"training"``).

    Example:
        >>> with peer_failures("training"):
        ...     loss.backward()     # DDP's gradient all-reduce
    """
    try:
        yield
    except RuntimeError as exc:
        dist = torch.distributed
        backend_error = getattr(dist, "DistBackendError", ())
        if not is_distributed() or isinstance(exc, DistributedError):
            raise
        if not (isinstance(exc, backend_error) or _PEER_FAILED.search(str(exc)[:400])):
            raise
        raise DistributedError(
            f"rank {dist.get_rank()} of {dist.get_world_size()}: {during} stopped "
            f"({error_detail(exc)}); "
            "another rank failed or stopped answering: see that rank's error"
        ) from exc


# --- statistics ------------------------------------------------------------------------------


def merge_extremes(
    lo: torch.Tensor, hi: torch.Tensor, *, timeout: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The element-wise minimum of ``lo`` and maximum of ``hi`` over all ranks (one
    collective). A rank that saw no data passes ``+inf`` / ``-inf``.

    Returns:
        ``(lo, hi)``: new float tensors, identical on every rank.
    """
    both = torch.stack([-lo.double(), hi.double()])  # (2, R): one MAX reduces both ends
    all_reduce(both, "max", timeout=timeout)
    return (-both[0]).to(lo.dtype), both[1].to(hi.dtype)


def weighted_average(
    values: torch.Tensor, weight: float, *, timeout: float | None = None
) -> tuple[torch.Tensor, float]:
    """The average of every rank's ``values`` weighted by its ``weight`` (a count), and
    the total weight. Where the total is 0 the values come back as they are.

    Example:
        >>> weighted_average(torch.tensor([2.0]), 3.0)
        (tensor([2.]), 3.0)
    """
    packed = torch.cat(
        [
            values.double().reshape(-1) * weight,
            torch.tensor([float(weight)], dtype=torch.float64, device=values.device),
        ]
    )
    all_reduce(packed, "sum", timeout=timeout)
    total = float(packed[-1])
    if total <= 0:
        return values, 0.0
    return (packed[:-1] / total).reshape(values.shape).to(values.dtype), total


def merge_moments(
    count: float, mean: torch.Tensor, m2: torch.Tensor, *, timeout: float | None = None
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Pool every rank's streaming ``(count, mean, m2)`` (m2: the sum of squared deviations
    from the mean) into those of all the data together (Chan et al.), in float64.

    Returns:
        ``(count, mean, m2)`` over all ranks.
    """
    gmean, total = weighted_average(mean.double(), count, timeout=timeout)
    spread = (
        (m2.double() + count * (mean.double() - gmean).square())
        if count
        else torch.zeros_like(gmean)
    )
    all_reduce(spread, "sum", timeout=timeout)
    return total, gmean, spread


def merge_histogram(hist, n_rows: int, *, timeout: float | None = None) -> None:
    """Merge a :class:`~quantlens.core.histogram.RowHistogram` over all ranks in place: the
    per-row ranges grow to the union of every rank's (the counts are re-binned onto it),
    then the counts are summed. A histogram that saw no data (``counts is None``) takes the
    common range with every rank's counts.

    Args:
        hist: the local histogram.
        n_rows: the number of rows every rank agreed on.
    """
    empty = hist.counts is None
    inf = torch.full((n_rows,), float("inf"), dtype=torch.float64)
    lo, hi = merge_extremes(inf if empty else hist.lo, -inf if empty else hist.hi, timeout=timeout)
    if empty:
        hist.lo, hist.hi = lo, hi
        hist.counts = torch.zeros(n_rows, hist.bins, dtype=torch.float64)
    elif bool((lo < hist.lo).any() or (hi > hist.hi).any()):
        hist.rebin(lo, hi)
    all_reduce(hist.counts, "sum", timeout=timeout)


# --- one rank acts, the others wait -----------------------------------------------------------


def broadcast(tensor: torch.Tensor, src: int = 0, *, timeout: float | None = None) -> torch.Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s (outside a group: unchanged).

    Implemented as a sum all-reduce of ``src``'s values and zeros elsewhere, so it shares
    :func:`all_reduce`'s timeout and error.

    Example:
        >>> broadcast(torch.tensor([1.0]))   # one process: unchanged
        tensor([1.])
    """
    if not is_distributed():
        return tensor
    mine = tensor.double() if tensor.is_floating_point() else tensor.long()
    if rank() != src:
        mine = torch.zeros_like(mine)
    all_reduce(mine, "sum", timeout=timeout)
    tensor.copy_(mine.to(tensor.dtype))
    return tensor


def on_rank0(fn, *, what: str, timeout: float | None = None):
    """Run ``fn()`` on rank 0 only while the other ranks wait (a barrier bounded by
    ``timeout``); if it raised on rank 0, the others raise too, so every rank fails together.

    Args:
        fn: what rank 0 does (write a file, print).
        what: the action, for the other ranks' error message (``"saving out/"``).
        timeout: seconds the other ranks wait (default :func:`default_timeout`).

    Returns:
        ``fn()``'s value on rank 0, ``None`` on the others (outside a group: ``fn()``).

    Raises:
        DistributedError: on ranks other than 0, rank 0 failed (its own error is re-raised
            there) or did not finish within ``timeout``.

    Example:
        >>> on_rank0(lambda: 42, what="answering")
        42
    """
    if not is_distributed():
        return fn()
    failed, value, error = torch.zeros(1), None, None
    if rank() == 0:
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, once the others know
            failed[0], error = 1.0, exc
    all_reduce(failed, "max", timeout=timeout, what=f"waiting for rank 0 {what}")
    if error is not None:
        raise error
    if failed[0] > 0:
        raise DistributedError(
            f"rank {rank()} of {world_size()}: rank 0 failed while {what}; see rank 0's error"
        )
    return value
