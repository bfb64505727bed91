"""Layers with an explicit input scale through every exporter: ONNX (a ``Div`` in front),
torch.export and TorchScript compute what the quantlens model computes."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_similar, generator, random_tensor
from torch import nn

import quantlens as ql
from quantlens.export import load_runner
from quantlens.nn.input_scale import set_input_scale
from quantlens.nn.qlinear import QLinear

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = {"w4": ql.WeightOnly(bits=4, group_size=32), "dynamic": ql.Dynamic()}


def _scaled(config) -> nn.Module:
    torch.manual_seed(0)
    qm = ql.quantize(nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32)), config)
    for layer, seed in ((qm[0], 1), (qm[2], 2)):
        set_input_scale(layer, torch.rand(layer.in_features, generator=generator(seed)) * 4 + 0.1)
        if isinstance(layer, QLinear):
            layer.kernel = "reference"
    return qm


@pytest.mark.parametrize("fmt", ["onnx", "pt2", "torchscript"])
@pytest.mark.parametrize("method", list(CONFIGS))
def test_exported_files_apply_the_input_scale(fmt, method, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    qm = _scaled(CONFIGS[method])
    path = ql.export(qm, tmp_path / f"m.{fmt}", format=fmt, example_inputs=(random_tensor(2, 64),))
    x = random_tensor(5, 64, seed=3)
    with torch.no_grad():
        ref = qm(x)
        for layer in (qm[0], qm[2]):
            set_input_scale(layer, None)
        unscaled = qm(x)  # what a file that dropped the scales would compute
    out = load_runner(path, fmt)(x)[0]
    # int8 activations: a rounding step may differ between runtimes on a few values
    atol = 1e-4 if method == "w4" else 2e-2 * float(ref.abs().max())
    assert_similar(out, ref, atol=atol, rtol=1e-3)
    assert not torch.allclose(out, unscaled, atol=0.1)
