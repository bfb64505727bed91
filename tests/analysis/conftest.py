"""Fixtures shared by the analysis tests: one thread, the trained digits CNN, small data subsets,
a Static digits model, and the test-only weight-only method."""

from __future__ import annotations

import pytest
import torch

import quantlens as ql
from quantlens import zoo


@pytest.fixture(autouse=True)
def _one_thread():  # small models: more threads only contend on a shared machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits_model():
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


@pytest.fixture(scope="session")
def toy_method():
    """A minimal module-swapping weight-only method (see analysis_helpers.py), registered for the
    session."""
    from analysis_helpers import ToyWeightOnly, register, unregister

    register()
    yield ToyWeightOnly
    unregister()
