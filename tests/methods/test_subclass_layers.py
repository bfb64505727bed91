"""A model's own subclasses of the standard layers: quantized like the base by every
method when they keep its computation; left float, with the reason, when they override it."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_similar, random_tensor
from torch import nn

import quantlens as ql
from quantlens.nn.registry import standard_class, subclass_reason

pytestmark = pytest.mark.usefixtures("one_thread")


class FalconLinear(nn.Linear):
    """Same computation as nn.Linear, one extra method (what HF models often do)."""

    def flops(self) -> int:
        return 2 * self.in_features * self.out_features


class ScaledLinear(nn.Linear):
    def forward(self, x):
        return 2.0 * super().forward(x)


class MyConv(nn.Conv2d):
    pass


class PaddedConv(nn.Conv2d):
    def _conv_forward(self, x, weight, bias):  # changes what forward computes
        return super()._conv_forward(nn.functional.pad(x, (1, 1, 1, 1)), weight, bias)


class Net(nn.Module):
    def __init__(self, linear: type, conv: type):
        super().__init__()
        self.conv = conv(1, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc1 = linear(8 * 64 if conv is not PaddedConv else 8 * 100, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(self.relu(self.conv(x)), 1))))


def _net(linear, conv):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Net(linear, conv).eval()


X = random_tensor(32, 1, 8, 8, seed=1, dist="uniform")

METHODS = {
    "static": ql.Static(observer="minmax"),
    "static-eager": ql.Static(observer="minmax", mode="eager"),
    "qat": ql.QAT(),
    "dynamic": ql.Dynamic(),
    "dynamic-conv": ql.Dynamic(modules=("linear", "conv2d")),
    "weight-only": ql.WeightOnly(bits=8, group_size=None, modules=("linear", "conv2d")),
}
# the layers each method quantizes (Dynamic's default leaves convolutions float next to Linear)
KINDS = {"dynamic": ("fc1",)}


def _records(qm) -> dict:
    return {r.name.removesuffix(".module"): r for r in qm.quantlens_summary.records}


def test_standard_class_and_reason():
    assert standard_class(FalconLinear(4, 4), [nn.Linear]) is nn.Linear
    assert standard_class(nn.Linear(4, 4), [nn.Linear]) is nn.Linear
    assert standard_class(ScaledLinear(4, 4), [nn.Linear]) is None
    assert standard_class(MyConv(1, 1, 1), [nn.Linear]) is None
    assert subclass_reason(FalconLinear(4, 4), [nn.Linear]) is None
    assert "ScaledLinear subclasses Linear but overrides forward" in subclass_reason(
        ScaledLinear, [nn.Linear]
    )
    assert "overrides _conv_forward" in subclass_reason(PaddedConv, [nn.Conv2d])


@pytest.mark.parametrize("method", list(METHODS))
def test_subclass_keeping_forward_is_quantized_like_its_base(method):
    model = _net(FalconLinear, MyConv)
    qm = ql.quantize(model, METHODS[method], calib_data=X)
    records = _records(qm)
    for name in KINDS.get(method, ("conv", "fc1")):
        assert records[name].action == "quantized", (name, records[name])
        assert records[name].kind in (
            "FalconLinear",
            "MyConv",
        )  # the summary names the model's class
    with torch.no_grad():
        assert_similar(qm(X), model(X), min_cosine=0.99)
    assert type(model.fc1) is FalconLinear  # the caller's model keeps its classes


@pytest.mark.filterwarnings("ignore:Dynamic quantized only")  # the point of this model
@pytest.mark.parametrize("method", list(METHODS))
def test_subclass_overriding_forward_stays_float_and_says_why(method):
    model = _net(ScaledLinear, PaddedConv)
    qm = ql.quantize(model, METHODS[method], calib_data=X)
    records = _records(qm)
    assert "ScaledLinear subclasses Linear but overrides forward" in records["fc1"].reason
    assert records["fc1"].action != "quantized"
    if method != "dynamic":
        assert "PaddedConv subclasses Conv2d but overrides _conv_forward" in records["conv"].reason
    assert records["fc2"].action == "quantized"
    assert isinstance(qm.get_submodule("fc1"), ScaledLinear)  # runs its own forward, in float
    with torch.no_grad():
        assert_similar(qm(X), model(X), min_cosine=0.99)
