"""Peak memory runs in a child process; torch.nn:ReLU (no weights, allocates an output the
size of its input) makes the expected numbers known in advance."""

import pytest
import torch

from quantlens.errors import QuantizationFailedError
from quantlens.eval.memory import ModelRef, measure_peak_memory


def test_inference_memory_tracks_the_activation_size():
    small = measure_peak_memory(ModelRef.factory("torch.nn:ReLU"), torch.randn(4, 64), reps=1)
    big = measure_peak_memory(
        ModelRef.factory("torch.nn:ReLU"), torch.randn(2048, 4096), reps=2
    )  # 33.5 MB out
    assert small.method in ("VmHWM", "ru_maxrss")
    assert big.inference_bytes > 25e6
    assert big.inference_bytes < 120e6
    assert small.inference_bytes < 10e6
    assert big.peak_bytes >= big.inference_bytes


def test_child_errors_come_back_as_one_line():
    with pytest.raises(QuantizationFailedError, match="ModuleNotFoundError"):
        measure_peak_memory(ModelRef.factory("no_such_module_xyz:make"), torch.zeros(1, 2))
