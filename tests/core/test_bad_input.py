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
