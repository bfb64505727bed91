"""Shared pytest set-up: puts tests/ on sys.path (in every import mode), so any test can
``from helpers import assert_similar, random_tensor, ...``; the ``one_thread`` fixture."""

import sys
from pathlib import Path

import pytest
import torch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def one_thread():
    """The CI machine is small and shared: int8 kernels and observers run on one thread
    (the quantized engine is restored too)."""
    threads, engine = torch.get_num_threads(), torch.backends.quantized.engine
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = engine


@pytest.fixture(autouse=True)
def _restore_quantized_engine():
    """Quantizing for a backend switches PyTorch's global quantized engine (the int8 model
    needs it to run); put it back after every test so that the next test on this worker
    sees the default, whatever the order xdist gives them."""
    engine = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = engine
