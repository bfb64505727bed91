"""Every user mistake raises a QuantlensError subclass whose message names the problem."""

import pytest
import torch

from quantlens.core import QScheme, compute_qparams, fake_quantize, pack, quantize_tensor, unpack
from quantlens.core.observers import get_observer
from quantlens.errors import InputError, QuantlensError, SchemeError

PER_CHANNEL = QScheme(bits=8, granularity="per_channel", axis=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_inf_rejected_everywhere(bad):
    x = torch.tensor([1.0, bad, 2.0])
    with pytest.raises(InputError, match="NaN/Inf"):
        quantize_tensor(x, QScheme(bits=8))
    with pytest.raises(InputError, match="NaN/Inf"):
        get_observer("minmax").update(x)
    with pytest.raises(InputError, match="NaN or Inf"):
        compute_qparams(torch.tensor(bad), torch.tensor(1.0), QScheme(bits=8))


def test_integer_tensor_to_quantize():
    with pytest.raises(InputError, match="floating-point"):
        quantize_tensor(torch.arange(4), QScheme(bits=8))


def test_mismatched_scale_shape():
    x = torch.randn(4, 8)
    with pytest.raises(InputError, match=r"scale has shape \(3,\).*need \(4,\)"):
        quantize_tensor(x, PER_CHANNEL, scale=torch.ones(3))
    with pytest.raises(InputError, match="zero_point has shape"):
        quantize_tensor(x, PER_CHANNEL, scale=torch.ones(4), zero_point=torch.zeros(5))
    with pytest.raises(InputError, match="scale has shape"):
        fake_quantize(x, torch.ones(8), torch.zeros(8), PER_CHANNEL)
    with pytest.raises(InputError, match="positive and finite"):
        quantize_tensor(x, PER_CHANNEL, scale=torch.zeros(4))


@pytest.mark.parametrize("axis", [2, -3, 5])
def test_axis_out_of_range(axis):
    scheme = QScheme(bits=8, granularity="per_channel", axis=axis)
    with pytest.raises(InputError, match=f"axis {axis} is out of range for a tensor with 2"):
        quantize_tensor(torch.randn(3, 4), scheme)
    group = QScheme(bits=4, granularity="per_group", group_size=2, axis=axis)
    with pytest.raises(InputError, match="out of range"):
        quantize_tensor(torch.randn(3, 4), group)
    with pytest.raises(InputError, match="out of range"):
        get_observer("minmax", axis=axis).update(torch.randn(3, 4))


def test_bits_out_of_range():
    with pytest.raises(SchemeError, match="1 to 8"):
        QScheme(bits=9)
    with pytest.raises(InputError, match="1 to 8"):
        pack(torch.zeros(4, dtype=torch.uint8), bits=0)
    with pytest.raises(InputError, match="1 to 8"):
        unpack(torch.zeros(4, dtype=torch.uint8), bits=16, shape=(2,))


def test_pack_non_integer_and_out_of_range():
    with pytest.raises(InputError, match="integer tensor"):
        pack(torch.tensor([0.0, 1.0]), bits=2)
    with pytest.raises(InputError, match=r"\[0, 4\] do not fit 2 bits"):
        pack(torch.tensor([0, 4]), bits=2)
    with pytest.raises(InputError, match="signed range"):
        pack(torch.tensor([-3, 1]), bits=2, signed=True)


def test_range_order_and_shapes():
    with pytest.raises(InputError, match="greater than max_val"):
        compute_qparams(torch.tensor(2.0), torch.tensor(1.0), QScheme(bits=8))
    with pytest.raises(InputError, match="shape"):
        compute_qparams(torch.zeros(2), torch.zeros(3), QScheme(bits=8))


def test_all_are_quantlens_errors():
    for exc in (InputError, SchemeError):
        assert issubclass(exc, QuantlensError) and issubclass(exc, ValueError)


def test_fake_quantize_rejects_nan_and_non_positive_scales():
    scheme = QScheme(bits=8)
    with pytest.raises(InputError, match="NaN/Inf"):
        fake_quantize(torch.tensor([float("nan"), 1.0]), torch.tensor(0.1), torch.tensor(0), scheme)
    for scale in (0.0, -0.1, float("inf")):
        with pytest.raises(InputError, match="positive and finite"):
            fake_quantize(torch.tensor([1.0]), torch.tensor(scale), torch.tensor(0), scheme)


def test_zero_points_must_be_whole_levels_inside_the_grid_and_come_with_a_scale():
    scheme = QScheme(bits=8, symmetric=False)
    x = torch.randn(4)
    with pytest.raises(InputError, match="without scale"):
        quantize_tensor(x, scheme, zero_point=torch.tensor(3))
    with pytest.raises(InputError, match=r"\[0, 255\]"):
        quantize_tensor(x, scheme, scale=torch.tensor(0.1), zero_point=torch.tensor(300))
    with pytest.raises(InputError, match="whole numbers"):
        quantize_tensor(x, scheme, scale=torch.tensor(0.1), zero_point=torch.tensor(2.7))
    with pytest.raises(InputError, match=r"\[-8, 7\]"):
        fake_quantize(x, torch.tensor(0.1), torch.tensor(9), QScheme(bits=4))


def test_empty_tensor_and_bad_axes():
    with pytest.raises(InputError, match="empty"):
        quantize_tensor(torch.randn(0, 4), QScheme(bits=8))
    with pytest.raises(SchemeError, match="axis must be an integer"):
        QScheme(granularity="per_channel", axis="0")
    with pytest.raises(SchemeError, match="per_tensor"):
        QScheme(axis=1)


def test_a_range_wider_than_float32_still_gives_a_finite_scale():
    x = torch.tensor([-2e38, 0.0, 2e38])
    qt = quantize_tensor(x, QScheme(bits=8, symmetric=False))
    assert torch.isfinite(qt.scale).all() and torch.isfinite(qt.dequantize()).all()
    assert (qt.dequantize() - x).abs().max() <= qt.scale.max() / 2 * 1.01


# --- regressions: values float32 cannot hold, and the wrong kind of argument ------------------

NF4 = QScheme(bits=4, codebook="nf4")


@pytest.mark.parametrize("scale", [-1.0, 0.0, float("nan"), float("inf")])
def test_codebook_scale_must_be_positive_and_finite(scale):
    with pytest.raises(InputError, match="scale must be positive and finite"):
        quantize_tensor(torch.randn(4), NF4, scale=torch.tensor(scale))


def test_asymmetric_extremes_dequantize_finite():
    x = torch.tensor([-3.4e38, 3.4e38])
    out = quantize_tensor(x, QScheme(bits=8, symmetric=False)).dequantize()
    assert torch.isfinite(out).all() and out[0] < -3.3e38 and out[1] > 3.3e38


@pytest.mark.parametrize("symmetric", [True, False])
def test_float16_extremes_dequantize_to_float16_finite(symmetric):
    x = torch.tensor([-65504.0, 65504.0], dtype=torch.float16)
    out = quantize_tensor(x, QScheme(bits=8, symmetric=symmetric)).dequantize(torch.float16)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert out[0] == -65504 and out[1] > 65000


def test_fake_quantize_extremes_stay_finite():
    scheme = QScheme(bits=8, symmetric=False)
    x = torch.tensor([-3.4e38, 3.4e38])
    scale, zp = compute_qparams(x.min(), x.max(), scheme)
    assert torch.isfinite(fake_quantize(x, scale, zp, scheme)).all()


@pytest.mark.parametrize("dtype", [torch.int32, torch.int8, torch.bool])
def test_dequantize_to_a_non_float_dtype(dtype):
    with pytest.raises(InputError, match="dequantize returns floats"):
        quantize_tensor(torch.randn(4), QScheme(bits=8)).dequantize(dtype)


def test_float64_beyond_float32_is_refused():
    with pytest.raises(InputError, match="beyond float32's range"):
        quantize_tensor(torch.tensor([1e300, 1.0], dtype=torch.float64), QScheme(bits=8))


def test_meta_tensor():
    with pytest.raises(InputError, match="meta device"):
        quantize_tensor(torch.randn(4, device="meta"), QScheme(bits=8))
    with pytest.raises(InputError, match="meta"):
        pack(torch.zeros(4, dtype=torch.uint8, device="meta"), bits=2)


def test_scheme_from_dict_unknown_key():
    with pytest.raises(SchemeError, match="unknown QScheme key.*'foo'.*valid keys: bits"):
        QScheme.from_dict({"bits": 8, "foo": 1})
    with pytest.raises(SchemeError, match="dict"):
        QScheme.from_dict([8])
    assert QScheme.from_dict(QScheme(bits=4).to_dict()) == QScheme(bits=4)


def test_lists_to_fake_quantize_and_pack():
    with pytest.raises(InputError, match="got list"):
        fake_quantize([1.0, 2.0], torch.tensor(0.1), torch.tensor(0), QScheme(bits=8))
    with pytest.raises(InputError, match="got list"):
        pack([1, 2], bits=2)
    with pytest.raises(InputError, match="scheme must be a QScheme"):
        quantize_tensor(torch.randn(3), {"bits": 8})


@pytest.mark.parametrize("shape", [(-1, 4), "ab", None, (2.0,), (True,)])
def test_unpack_bad_shape(shape):
    with pytest.raises(InputError, match="shape must be a sequence of non-negative integers"):
        unpack(torch.zeros(2, dtype=torch.uint8), bits=4, shape=shape)
