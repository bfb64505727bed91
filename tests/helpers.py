"""Helpers every test layer shares: seeded random tensors, ``assert_similar``, strict JSON
reading and stand-ins for a Ctrl-C.

Import them as ``from helpers import assert_similar, random_tensor`` (tests/conftest.py puts
this folder on sys.path).
"""

from __future__ import annotations

import json

import torch

from quantlens.core.metrics import cosine_similarity, max_abs_error, sqnr_db
from quantlens.errors import QuantlensError


def generator(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (tests never touch the global RNG state)."""
    return torch.Generator().manual_seed(seed)


def random_tensor(*shape: int, seed: int = 0, dist: str = "normal", scale: float = 1.0,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
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


def heavy_tailed(n: int, *, seed: int = 0, dist: str = "laplace",
                 outliers: tuple[float, ...] = (40.0, -50.0, 60.0, -80.0)) -> torch.Tensor:
    """``n`` heavy-tailed samples (Laplace or Student-t) with a few large outliers planted
    at seeded random positions: the case where clipping observers should beat min-max."""
    x = random_tensor(n, seed=seed, dist=dist)
    where = torch.randperm(n, generator=generator(seed + 1))[: len(outliers)]
    x[where] = torch.tensor(outliers, dtype=x.dtype)
    return x


def assert_similar(actual: torch.Tensor, expected: torch.Tensor, *, atol: float = 1e-6,
                   rtol: float = 1e-5, min_sqnr_db: float | None = None,
                   min_cosine: float | None = None, msg: str = "") -> None:
    """Assert two tensors agree, with a message that says by how much they do not.

    By default element-wise (``|a - e| <= atol + rtol * |e|``). With ``min_sqnr_db`` and/or
    ``min_cosine``, checks those aggregate measures instead (for quantized outputs, which
    never match element-wise).
    """
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    prefix = f"{msg}: " if msg else ""
    assert actual.shape == expected.shape, f"{prefix}shape {tuple(actual.shape)} != {tuple(expected.shape)}"
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


def strict_json(text: str):
    """``json.loads`` that fails on ``Infinity``/``NaN`` (what ``JSON.parse`` and most parsers reject)."""
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
