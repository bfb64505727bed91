"""The zoo's digits CNN on a few samples, as in tests/eval (the comparison runs on them)."""

from __future__ import annotations

import pytest
import torch

from quantlens import zoo


@pytest.fixture(scope="session")
def digits_model():
    torch.set_num_threads(1)
    return zoo.load_model("digits-cnn")


@pytest.fixture(scope="session")
def digits_test():
    test = zoo.load_dataset("digits", "test")
    return test.inputs[:128], test.labels[:128]
