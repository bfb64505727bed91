"""Bad-input properties of every public tensor function (hypothesis).

Tensors are drawn with NaN, ±Inf, subnormals, each dtype's extremes, empty and 0-d shapes,
non-contiguous layouts and every dtype. The contract: a function either returns finite
results for finite input, or raises a QuantlensError (never NaN/-inf out of finite in, never
a raw TypeError/RuntimeError/IndexError).
"""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantlens.core import QScheme, compute_qparams, fake_quantize, pack, quantize_tensor, unpack
from quantlens.core.layout import qparam_shape
from quantlens.core.observers import get_observer
from quantlens.errors import QuantlensError

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
OTHERS = (torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool, torch.complex64)
DEQUANT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _specials(dtype: torch.dtype) -> list[float]:
    info = torch.finfo(dtype)
    return [
        0.0,
        -0.0,
        1.0,
        -1.0,
        info.max,
        -info.max,
        info.tiny,
        -info.tiny,
        info.tiny / 4,
        3.4e38,
        -3.4e38,
        65504.0,
        -65504.0,
        1e-40,
        math.nan,
        math.inf,
        -math.inf,
    ]


@st.composite
def float_tensors(draw, dtypes=FLOATS, min_dims: int = 0):
    """A float tensor with a mix of ordinary and special values, sometimes non-contiguous."""
    dtype = draw(st.sampled_from(dtypes))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=min_dims, max_size=3)))
    n = math.prod(shape)
    ordinary = st.floats(-1e3, 1e3, allow_nan=False, width=32)
    special = st.sampled_from(_specials(dtype))
    values = draw(st.lists(st.one_of(ordinary, special), min_size=n, max_size=n))
    x = torch.tensor(values, dtype=torch.float64).to(dtype).reshape(shape)  # out of range -> inf
    if x.ndim >= 2 and draw(st.booleans()):
        x = x.transpose(0, -1)  # non-contiguous view
    return x


@st.composite
def any_tensors(draw):
    """A tensor of any dtype (floats as above; integers, bools and complex numbers too)."""
    if draw(st.booleans()):
        return draw(float_tensors())
    dtype = draw(st.sampled_from(OTHERS))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    return torch.randint(-3, 4, shape).to(dtype)


@st.composite
def schemes(draw):
    """Any valid QScheme: uniform or codebook, each granularity, padded groups."""
    codebook = draw(st.sampled_from([None, None, "nf4", "log2", "kmeans"]))
    bits = 4 if codebook == "nf4" else draw(st.integers(2, 8))
    symmetric = draw(st.booleans())
    granularity = draw(st.sampled_from(["per_tensor", "per_channel", "per_group"]))
    kwargs = {}
    if granularity == "per_channel":
        kwargs["axis"] = draw(st.sampled_from([0, -1]))
    if granularity == "per_group":
        kwargs.update(group_size=draw(st.integers(1, 4)), pad=draw(st.booleans()))
    return QScheme(
        bits=bits,
        symmetric=symmetric,
        signed=draw(st.booleans()),
        granularity=granularity,
        codebook=codebook,
        **kwargs,
    )


def _finite(x: torch.Tensor) -> bool:
    return x.is_floating_point() and bool(torch.isfinite(x.detach()).all()) if x.numel() else True


def _input_finite(x: torch.Tensor) -> bool:
    return x.is_floating_point() and _finite(x)


def _outcome(fn, *args, **kwargs):
    """``fn``'s result, or None when it raised a QuantlensError (any other error fails)."""
    try:
        return fn(*args, **kwargs)
    except QuantlensError as exc:
        assert "\n" not in str(exc).strip(), f"multi-line error: {exc}"
        return None


@FEW
@given(float_tensors(), schemes(), st.sampled_from(DEQUANT_DTYPES))
def test_quantize_dequantize_finite_or_error(x, scheme, dtype):
    qt = _outcome(quantize_tensor, x, scheme)
    if qt is None:
        return
    assert _input_finite(x), "a non-finite or non-float tensor was quantized"
    assert _finite(qt.scale) and bool((qt.scale > 0).all())
    out = _outcome(qt.dequantize, dtype)
    assert out is not None and out.dtype == dtype and out.shape == x.shape
    assert _finite(out), f"finite input dequantized to non-finite {dtype} values"


@FEW
@given(any_tensors(), schemes())
def test_any_dtype_is_quantized_or_refused(x, scheme):
    qt = _outcome(quantize_tensor, x, scheme)
    if qt is not None:
        assert x.is_floating_point()


@FEW
@given(float_tensors(min_dims=1), schemes(), float_tensors(dtypes=(torch.float32,)))
def test_given_scale_checked(x, scheme, scale_values):
    """A user scale (of any value, any shape) is used only when positive and finite."""
    expected = _outcome(qparam_shape, x.shape, scheme)
    if expected is None:
        return
    scale = scale_values.reshape(-1)[:1].reshape(()) if scale_values.numel() else scale_values
    if scale.numel() == 1 and expected:
        scale = scale.expand(expected).clone()
    qt = _outcome(quantize_tensor, x, scheme, scale=scale)
    if qt is not None:
        assert _finite(qt.scale) and bool((qt.scale > 0).all())
        assert _finite(qt.dequantize())


@FEW
@given(float_tensors(), float_tensors(), schemes())
def test_compute_qparams_finite_or_error(lo, hi, scheme):
    lo, hi = lo.reshape(-1)[:2], hi.reshape(-1)[:2]
    result = _outcome(compute_qparams, lo, hi, scheme)
    if result is None:
        return
    scale, zero_point = result
    assert _finite(scale) and bool((scale > 0).all())
    assert bool(((zero_point >= scheme.qmin) & (zero_point <= scheme.qmax)).all())


@FEW
@given(float_tensors(), schemes(), st.data())
def test_fake_quantize_finite_or_error(x, scheme, data):
    scheme = QScheme(
        bits=scheme.bits, symmetric=scheme.symmetric, signed=scheme.signed
    )  # uniform, per tensor
    if data.draw(st.booleans()) and x.is_floating_point() and _finite(x) and x.numel():
        params = _outcome(compute_qparams, x.float().amin(), x.float().amax(), scheme)
        if params is None:
            return
        scale, zero_point = params
    else:
        scale = torch.tensor(data.draw(st.sampled_from(_specials(torch.float32))))
        zero_point = torch.tensor(data.draw(st.integers(-300, 300)))
    out = _outcome(fake_quantize, x, scale, zero_point, scheme)
    if out is not None:
        assert out.shape == x.shape
        assert _finite(out), "finite input fake-quantized to non-finite values"


@FEW
@given(any_tensors(), st.integers(-1, 10), st.booleans())
def test_pack_unpack_round_trip_or_error(q, bits, signed):
    packed = _outcome(pack, q, bits, signed=signed)
    if packed is None:
        return
    assert packed.dtype == torch.uint8 and packed.ndim == 1
    back = _outcome(unpack, packed, bits, q.shape, signed=signed)
    assert back is not None and torch.equal(back.long(), q.long())


@FEW
@given(
    st.one_of(
        st.none(),
        st.text(max_size=3),
        st.lists(st.integers(-3, 3), max_size=3),
        st.integers(-3, 3),
        st.tuples(st.floats(allow_nan=True), st.integers(0, 3)),
    ),
    st.integers(1, 8),
)
def test_unpack_bad_shape_is_an_error(shape, bits):
    packed = torch.zeros(2, dtype=torch.uint8)
    out = _outcome(unpack, packed, bits, shape)
    if out is not None:
        assert out.numel() * bits <= 16 and tuple(out.shape) == tuple(
            shape if not isinstance(shape, int) else (shape,)
        )


OBSERVERS = ("minmax", "moving_average", "percentile", "mse", "entropy", "meanstd")


@FEW
@given(
    st.lists(float_tensors(), min_size=1, max_size=3),
    st.sampled_from(OBSERVERS),
    st.sampled_from([None, 0]),
    st.integers(2, 8),
)
def test_observers_finite_or_error(batches, name, axis, bits):
    """Every observer, fed batches of any values, gives finite positive scales or an error."""
    observer = get_observer(name, axis=axis)
    fed = [b for b in batches if _outcome(lambda b=b: observer.update(b) or True) and b.numel()]
    granularity = "per_tensor" if axis is None else "per_channel"
    params = _outcome(observer.qparams, QScheme(bits=bits, granularity=granularity))
    if params is not None:
        assert fed and all(_input_finite(b) for b in fed)
        assert _finite(params[0]) and bool((params[0] > 0).all())


@pytest.mark.parametrize("value", [[1.0, 2.0], 3, "x", None, {"a": 1}])
def test_non_tensors_are_errors(value):
    scheme = QScheme(bits=8)
    for fn, args in (
        (quantize_tensor, (value, scheme)),
        (fake_quantize, (value, torch.tensor(0.1), 0, scheme)),
        (pack, (value, 2)),
    ):
        with pytest.raises(QuantlensError):
            fn(*args)
