"""Shared pytest set-up: puts tests/ on sys.path (in every import mode), so any test can
``from helpers import assert_similar, random_tensor, ...``; the fixtures every test folder
shares: thread pinning that restores the previous count (``one_thread``, ``two_threads``), the
zoo's digits CNN and the digits splits (``digits_train``, ``digits_calib``, ``digits_test``,
all three as ``digits``, and ``digits_test_128``, the first 128 test images)."""

import sys
from pathlib import Path

import pytest
import torch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from helpers import torch_threads

from quantlens import zoo


@pytest.fixture
def one_thread():
    """The CI machine is small and shared: int8 kernels and observers run on one thread; the
    previous count is restored after the test (the quantized engine is restored for every test
    by ``_restore_quantized_engine``)."""
    with torch_threads(1):
        yield


@pytest.fixture
def two_threads():
    """Two torch threads for the test (the multi-threaded kernel paths), then the previous
    count."""
    with torch_threads(2):
        yield


@pytest.fixture(autouse=True)
def _restore_quantized_engine():
    """Quantizing for a backend switches PyTorch's global quantized engine (the int8 model
    needs it to run); put it back after every test so that the next test on this worker
    sees the default, whatever the order xdist gives them."""
    engine = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = engine


# --- digits: the zoo's real 8x8 digit images (fixed, seeded splits) ---------------------------


@pytest.fixture(scope="session")
def digits_model():
    """The zoo's trained digits CNN (shared: tests quantize copies, never this model)."""
    return zoo.load_model("digits-cnn")


@pytest.fixture(scope="session")
def digits_train():
    """The training split (:class:`~quantlens.zoo.ZooData`: ``.inputs``, ``.labels``)."""
    return zoo.load_dataset("digits", "train")


@pytest.fixture(scope="session")
def digits_calib():
    """The calibration split (256 images; no labels needed)."""
    return zoo.load_dataset("digits", "calib")


@pytest.fixture(scope="session")
def digits_test():
    """The test split (450 images)."""
    return zoo.load_dataset("digits", "test")


@pytest.fixture(scope="session")
def digits(digits_train, digits_calib, digits_test):
    """The three splits by name: ``digits["train"]``, ``digits["calib"]``, ``digits["test"]``."""
    return {"train": digits_train, "calib": digits_calib, "test": digits_test}


@pytest.fixture(scope="session")
def digits_test_128(digits_test):
    """``(inputs, labels)`` of the first 128 test images: a quick run's evaluation data."""
    return digits_test.inputs[:128], digits_test.labels[:128]
