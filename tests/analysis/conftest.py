"""Fixtures shared by the analysis tests: the trained digits CNN, small data subsets, and a
weight-only quantized MLP built without any method (so these tests do not depend on one)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import quantlens as ql
from quantlens import zoo
from quantlens.nn import QLinear


@pytest.fixture(scope="session")
def digits_model():
    torch.set_num_threads(2)
    return zoo.load_model("digits-cnn")


@pytest.fixture(scope="session")
def digits_test():
    data = zoo.load_dataset("digits", "test")
    return data.inputs[:192], data.labels[:192]


@pytest.fixture(scope="session")
def digits_calib():
    return zoo.load_dataset("digits", "calib").inputs[:128]


@pytest.fixture(scope="session")
def digits_static(digits_model, digits_calib):
    return ql.quantize(digits_model, ql.Static(observer="minmax"), calib_data=digits_calib)


def make_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)).eval()


def swap_qlinear(model: nn.Module, names: dict[str, int], group_size: int | None = None) -> nn.Module:
    """A copy of ``model`` with the Linear layers in ``names`` replaced by ``bits``-bit QLinear."""
    out = copy.deepcopy(model)
    for name, bits in names.items():
        lin = out.get_submodule(name)
        scheme = (ql.QScheme(bits=bits, granularity="per_group", group_size=group_size) if group_size
                  else ql.QScheme(bits=bits, granularity="per_channel", axis=0))
        out.set_submodule(name, QLinear.from_float(lin, ql.quantize_tensor(lin.weight.detach(), scheme)))
    return out


@pytest.fixture(scope="session")
def toy_method():
    """A minimal module-swapping weight-only method (see toy_method.py), registered for the session."""
    from toy_method import ToyWeightOnly, register, unregister

    register()
    yield ToyWeightOnly
    unregister()
