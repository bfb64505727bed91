"""Property-based round trips (hypothesis): bounded error, lossless packing, sane scales."""

import math

import torch
from helpers import generator
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlens.core import QScheme, compute_qparams, pack, quantize_tensor, unpack
from quantlens.core.layout import to_blocks

FAST = settings(max_examples=60, deadline=None)
finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def schemes(draw):
    bits = draw(st.integers(2, 8))
    symmetric = draw(st.booleans())
    signed = draw(st.booleans())
    return QScheme(bits=bits, symmetric=symmetric, signed=signed)


@FAST
@given(st.lists(finite, min_size=1, max_size=64), schemes())
def test_error_at_most_half_a_step_inside_range(values, scheme):
    x = torch.tensor(values, dtype=torch.float32)
    qt = quantize_tensor(x, scheme)
    scale, zp = qt.scale, qt.zero_point.float()
    lo, hi = scale * (scheme.qmin - zp), scale * (scheme.qmax - zp)
    inside = (x >= lo) & (x <= hi)
    err = (x - qt.dequantize()).abs()
    # float32 rounding of x / s adds a few ulps of |x| on top of the half step
    tol = scale / 2 * (1 + 1e-5) + 4 * torch.finfo(torch.float32).eps * x.abs()
    assert bool((err[inside] <= tol.expand_as(x)[inside]).all())
    # with its own min/max the grid covers x up to rounding of the zero-point: nothing is
    # clipped by more than half a step either
    assert bool((err <= tol).all())


@FAST
@given(finite, finite, schemes(), st.sampled_from(["uniform", "tiny", "constant"]))
def test_scales_positive_and_finite(a, b, scheme, kind):
    lo, hi = min(a, b), max(a, b)
    if kind == "tiny":
        hi = lo + 1e-30
    elif kind == "constant":
        hi = lo
    scale, zp = compute_qparams(torch.tensor(lo), torch.tensor(hi), scheme)
    assert math.isfinite(scale.item()) and scale.item() > 0
    assert scheme.qmin <= zp.item() <= scheme.qmax


@FAST
@given(st.integers(1, 8), st.integers(0, 300), st.integers(0, 2**31 - 1), st.booleans())
def test_pack_unpack_identity(bits, n, seed, signed):
    g = generator(seed)
    lo = -(1 << (bits - 1)) if signed else 0
    q = torch.randint(lo, lo + (1 << bits), (n,), generator=g)
    packed = pack(q, bits, signed=signed)
    assert packed.numel() == math.ceil(n * bits / 8)
    assert torch.equal(unpack(packed, bits, (n,), signed=signed).long(), q)


@st.composite
def blocked_cases(draw):
    """A 2-D tensor with a per-channel or per-group scheme on either axis."""
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6)) * 4
    values = draw(st.lists(finite, min_size=rows * cols, max_size=rows * cols))
    axis = draw(st.sampled_from([0, 1, -1]))
    bits = draw(st.integers(2, 8))
    symmetric = draw(st.booleans())
    if draw(st.booleans()):
        scheme = QScheme(bits=bits, symmetric=symmetric, granularity="per_channel", axis=axis)
    else:
        length = rows if axis == 0 else cols
        size = draw(st.sampled_from([d for d in (1, 2, 4, 8) if length % d == 0] or [1]))
        scheme = QScheme(
            bits=bits, symmetric=symmetric, granularity="per_group", axis=axis, group_size=size
        )
    return torch.tensor(values, dtype=torch.float32).reshape(rows, cols), scheme


@FAST
@given(blocked_cases())
def test_blocked_schemes_stay_within_half_a_step_with_positive_finite_scales(case):
    x, scheme = case
    qt = quantize_tensor(x, scheme)
    assert bool(torch.isfinite(qt.scale).all()) and bool((qt.scale > 0).all())
    assert bool((qt.zero_point >= scheme.qmin).all()) and bool((qt.zero_point <= scheme.qmax).all())
    err = to_blocks(x - qt.dequantize(), scheme)  # (..., elements sharing one scale)
    step = qt.scale.reshape(err.shape[:-1]).unsqueeze(-1)
    tol = step / 2 * (1 + 1e-5) + 4 * torch.finfo(torch.float32).eps * to_blocks(x, scheme).abs()
    assert bool((err.abs() <= tol).all())  # each element within half of its own block's step
