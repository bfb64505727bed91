"""Small models and data shared by the eval tests (the zoo's digits CNN on a few samples)."""

from __future__ import annotations

import pytest
import torch

import quantlens as ql
from quantlens import zoo


@pytest.fixture(scope="session")
def digits_model():
    torch.set_num_threads(1)
    return zoo.load_model("digits-cnn")


@pytest.fixture(scope="session")
def digits_test():
    test = zoo.load_dataset("digits", "test")
    return test.inputs[:128], test.labels[:128]


@pytest.fixture(scope="session")
def digits_static(digits_model):
    """A fast Static int8 model: min-max ranges from one calibration batch."""
    calib = zoo.load_dataset("digits", "calib").inputs[:64]
    return ql.quantize(
        digits_model, ql.Static(observer="minmax", calib_batches=1), calib_data=calib
    )
