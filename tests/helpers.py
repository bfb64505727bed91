"""Helpers every test layer shares: seeded random tensors, ``assert_similar``, strict JSON
reading, stand-ins for a Ctrl-C, ``torch_threads`` (pin the thread count, then restore it) and
``run_ranks`` (a gloo process group of spawned processes on 127.0.0.1).

Import them as ``from helpers import assert_similar, random_tensor`` (tests/conftest.py puts
this folder on sys.path).
"""

from __future__ import annotations

import contextlib
import datetime
import faulthandler
import json
import multiprocessing
import queue
import socket
import time
import traceback
from collections.abc import Callable, Iterator

import torch

from quantlens.core.metrics import cosine_similarity, max_abs_error, sqnr_db
from quantlens.errors import QuantlensError


def generator(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (tests never touch the global RNG state)."""
    return torch.Generator().manual_seed(seed)


def random_tensor(
    *shape: int,
    seed: int = 0,
    dist: str = "normal",
    scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A seeded random tensor.

    Args:
        shape: its shape.
        dist: ``"normal"``, ``"uniform"`` (in [-1, 1)), ``"laplace"`` or ``"student_t"`` (3 dof).
        scale: multiplies the samples.
    """
    g = generator(seed)
    if dist == "normal":
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
    elif dist == "uniform":
        x = torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1
    elif dist == "laplace":  # inverse CDF of a uniform sample
        u = torch.rand(*shape, generator=g, dtype=torch.float64).clamp(1e-12, 1 - 1e-12) - 0.5
        x = -u.sign() * torch.log1p(-2 * u.abs())
    elif dist == "student_t":  # normal / sqrt(chi2_3 / 3)
        z = torch.randn(*shape, generator=g, dtype=torch.float64)
        chi2 = torch.randn(3, *shape, generator=g, dtype=torch.float64).square().sum(0)
        x = z / (chi2 / 3).sqrt()
    else:
        raise ValueError(f"unknown dist {dist!r}")
    return (x * scale).to(dtype)


def heavy_tailed(
    n: int,
    *,
    seed: int = 0,
    dist: str = "laplace",
    outliers: tuple[float, ...] = (40.0, -50.0, 60.0, -80.0),
) -> torch.Tensor:
    """``n`` heavy-tailed samples (Laplace or Student-t) with a few large outliers planted
    at seeded random positions: the case where clipping observers should beat min-max."""
    x = random_tensor(n, seed=seed, dist=dist)
    where = torch.randperm(n, generator=generator(seed + 1))[: len(outliers)]
    x[where] = torch.tensor(outliers, dtype=x.dtype)
    return x


def assert_similar(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    min_sqnr_db: float | None = None,
    min_cosine: float | None = None,
    msg: str = "",
) -> None:
    """Assert two tensors agree, with a message that says by how much they do not.

    By default element-wise (``|a - e| <= atol + rtol * |e|``). With ``min_sqnr_db`` and/or
    ``min_cosine``, checks those aggregate measures instead (for quantized outputs, which
    never match element-wise).
    """
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    prefix = f"{msg}: " if msg else ""
    assert actual.shape == expected.shape, (
        f"{prefix}shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    )
    a, e = actual.detach().double(), expected.detach().double()
    if min_sqnr_db is not None or min_cosine is not None:
        if min_sqnr_db is not None:
            got = sqnr_db(e, a)
            assert got >= min_sqnr_db, f"{prefix}SQNR {got:.2f} dB < {min_sqnr_db} dB"
        if min_cosine is not None:
            got = cosine_similarity(e, a)
            assert got >= min_cosine, f"{prefix}cosine similarity {got:.6f} < {min_cosine}"
        return
    bad = (a - e).abs() > atol + rtol * e.abs()
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise AssertionError(
            f"{prefix}{int(bad.sum())} of {a.numel()} elements differ (max abs error "
            f"{max_abs_error(e, a):.3g}); first at {first}: {a[first].item()} vs {e[first].item()}"
        )


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block on ``n`` torch threads, then restore the previous count (also on error).

    The CI machine is small and shared: tests pin the count (the ``one_thread`` and
    ``two_threads`` fixtures of tests/conftest.py use this) and never leave it changed for the
    next test on the same worker.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def strict_json(text: str):
    """``json.loads`` that fails on ``Infinity``/``NaN`` (what ``JSON.parse`` and most parsers
    reject)."""

    def reject(name):
        raise AssertionError(f"not valid JSON: {name}")

    return json.loads(text, parse_constant=reject)


def interrupter(via: str | None = None):
    """A stand-in for a function a Ctrl-C lands in: it raises KeyboardInterrupt, or, with
    ``via``, what torch does when the Ctrl-C lands in a lazy import: another error with the
    interrupt as its ``__cause__`` (``"cause"``) or only as its ``__context__`` (``"context"``)."""

    def raiser(*args, **kwargs):
        if via is None:
            raise KeyboardInterrupt
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            if via == "cause":
                raise RuntimeError("failed to import torch._dynamo") from exc
            raise QuantlensError("graph capture failed")  # __context__ only

    return raiser


def _child(fn: Callable[..., list[str]], args: tuple, conn) -> None:
    faulthandler.disable()  # a crash is reported by the exit code, not a traceback dump
    torch.set_num_threads(1)
    try:
        conn.send(fn(*args))
    except Exception:  # noqa: BLE001  (reported to the parent, which fails the test with it)
        conn.send([traceback.format_exc()])
    conn.close()


def in_child(
    fn: Callable[..., list[str]], *args, timeout: float = 120.0
) -> tuple[int | None, list[str]]:
    """``fn(*args)`` (which returns a list of failures) in a forked process, so that code
    that kills its process (a segfaulting kernel) fails a test instead of ending the run.

    Returns:
        ``(exit code, failures)``: the exit code is negative when a signal killed the child
        (``-11``: SIGSEGV), and the failures are empty if it died before reporting.
    """
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, args, child))
    proc.start()
    child.close()
    failures: list[str] = []
    if parent.poll(timeout):
        try:
            failures = parent.recv()
        except EOFError:  # the child died before reporting
            pass
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
    return proc.exitcode, failures


def child_verdict(code: int | None, failures: list[str]) -> str:
    """A one-line account of an :func:`in_child` run, for an assertion message."""
    import signal

    if code is not None and code < 0:
        return f"the child died of {signal.Signals(-code).name}"
    return (
        f"exit code {code}; "
        + "; ".join(failures[:5])
        + (f" ... ({len(failures)} failures)" if failures else "")
    )


def _rank_main(fn: Callable, rank: int, world: int, port: int, args: tuple, results) -> None:
    torch.set_num_threads(1)
    dist = torch.distributed
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=30),
    )
    try:
        results.put((rank, True, fn(rank, world, *args)))
    except Exception as exc:  # noqa: BLE001  (reported to the parent, which asserts on it)
        results.put((rank, False, f"{type(exc).__name__}: {exc}"))
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable, world: int, *args, timeout: float = 60.0) -> list[tuple[bool, object]]:
    """``fn(rank, world, *args)`` in ``world`` spawned processes joined in a gloo process
    group on a free port of 127.0.0.1 (``fn`` must be importable: a module-level function of a
    test module). Every wait is bounded by ``timeout``; processes still alive then are killed.

    Returns:
        Per rank, ``(True, what fn returned)`` (plain Python values travel best), ``(False,
        "ErrorType: message")`` if it raised, or ``(False, "no result")`` if it died or hung.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("fork")  # no re-import; each rank runs torch on one thread
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_rank_main, args=(fn, rank, world, port, args, results), daemon=True)
        for rank in range(world)
    ]
    for proc in procs:
        proc.start()
    got: dict[int, tuple[bool, object]] = {}
    deadline = time.monotonic() + timeout
    while len(got) < world and time.monotonic() < deadline:
        try:
            rank, ok, value = results.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        got[rank] = (ok, value)
    for proc in procs:
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    return [got.get(rank, (False, "no result")) for rank in range(world)]


def tiny_llama(**config) -> torch.nn.Module:
    """A 2-layer ``LlamaForCausalLM`` with grouped-query attention, built offline from a small
    config (``config`` overrides the defaults), weights drawn from seed 0."""
    import transformers

    hidden = config.pop("hidden_size", 64)
    settings = {
        "vocab_size": 128,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        **config,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**settings)).eval()
