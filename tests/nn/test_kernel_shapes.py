"""Every kernel path runs every shape it declares and declines the others, without crashing.

Each sweep (tests/nn/kernel_sweep.py: input widths 1-130 at 1-17 tokens and a 3-D bf16
input, every scheme) runs in a forked child, so a kernel that kills the process (as
``torch._weight_int8pack_mm`` does in bf16 for widths that are not a multiple of 16) fails
the test with its signal instead of ending the run.
"""

import dataclasses

import pytest
import torch
from helpers import child_verdict, in_child
from kernel_sweep import sweep_dynamic, sweep_weight_only
from torch import nn

from quantlens.nn import QLinear, kernel_paths, kernels
from quantlens.nn.dynamic_linear import DynamicLinear, dynamic_kernels

_SLOW = {"fbgemm", "auto", "dense_bf16"}  # over 3 s each on a shared 2-core machine
_SLOW_DYNAMIC = {"reference", "fbgemm"}


def _params(names, slow=()):
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in names]


@pytest.mark.parametrize("path", _params([*kernel_paths(), "auto"], _SLOW))
def test_weight_only_path_runs_every_width_and_batch(path):
    code, failures = in_child(sweep_weight_only, path)
    assert code == 0 and not failures, child_verdict(code, failures)


@pytest.mark.parametrize("path", _params(dynamic_kernels(), _SLOW_DYNAMIC))
def test_dynamic_path_runs_every_width_and_batch(path):
    code, failures = in_child(sweep_dynamic, path)
    assert code == 0 and not failures, child_verdict(code, failures)


def test_the_sweep_catches_a_path_that_kills_the_process(monkeypatch):
    """Without its declared shapes, int8pack's op crashes (or is wrong) at width 20: the
    sweep reports it instead of dying with it."""
    if not hasattr(torch.ops.aten, "_weight_int8pack_mm"):
        pytest.skip("this torch has no _weight_int8pack_mm")
    undeclared = dataclasses.replace(kernel_paths()["int8pack"], shapes=kernels.Shapes())
    monkeypatch.setitem(kernels._PATHS, "int8pack", undeclared)
    code, failures = in_child(sweep_weight_only, "int8pack")
    assert code != 0 or failures


def test_declared_shapes_are_what_the_paths_decline():
    lin = nn.Linear(20, 32)
    from quantlens import QScheme, quantize_tensor

    layer = QLinear.from_float(
        lin, quantize_tensor(lin.weight.detach(), QScheme(bits=8, granularity="per_channel"))
    )
    assert (
        kernels.why_not(layer, "int8pack")
        == "it needs in_features that are a multiple of 16 (this layer has 20)"
    )
    assert "multiple of 32" in kernels.why_not(layer, "int4pack")
    assert all(
        layer.kernel_for(m, torch.float32) not in ("int8pack", "int4pack") for m in range(1, 40)
    )
    dyn = DynamicLinear.from_float(nn.Linear(1, 8))
    assert (
        dynamic_kernels()["int_mm"].why_not(dyn, torch.zeros(3, 1))
        == "it needs in_features of at least 2 (this layer has 1)"
    )
    assert dyn.kernel_for(torch.zeros(3, 1)).name != "int_mm"
