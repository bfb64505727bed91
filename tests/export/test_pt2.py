"""format="pt2": weight-only and dynamic models through torch.export, loaded back with
torch.export.load and run with plain PyTorch ops; int8 kernels refused by name."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_similar, random_tensor
from torch import nn

import quantlens as ql
from quantlens import zoo
from quantlens.errors import InputError
from quantlens.nn.qlinear import QLinear

pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


@pytest.mark.parametrize(
    "config",
    [
        ql.WeightOnly(bits=4, group_size=32),
        ql.WeightOnly(bits=2, group_size=16),
        ql.WeightOnly(bits=4, group_size=32, codebook="nf4"),
        ql.Dynamic(),
    ],
    ids=["w4", "w2", "nf4", "dynamic"],
)
def test_program_loads_and_matches(config, tmp_path):
    qm = ql.quantize(_mlp(), config)
    path = ql.export(qm, tmp_path / "m.pt2", format="pt2", example_inputs=(random_tensor(2, 64),))
    program = torch.export.load(str(path))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert all(t.startswith(("aten.", "<built-in")) for t in targets), targets  # no quantlens ops
    x = random_tensor(5, 64, seed=1)  # another batch size
    for layer in qm.modules():
        if isinstance(layer, QLinear):
            layer.kernel = "reference"
    with torch.no_grad():
        assert_similar(program.module()(x)[0], qm(x), atol=1e-4, rtol=1e-4)


def test_the_program_keeps_the_packed_codes(tmp_path):
    qm = ql.quantize(_mlp(), ql.WeightOnly(bits=4, group_size=32))
    path = ql.export(qm, tmp_path / "m.pt2", format="pt2", example_inputs=(random_tensor(2, 64),))
    state = torch.export.load(str(path)).state_dict
    packed = [v for k, v in state.items() if k.endswith("weight_packed")]
    assert [p.numel() for p in packed] == [64 * 128 // 2, 128 * 10 // 2]
    assert not [k for k, v in state.items() if v.is_floating_point() and v.numel() >= 64 * 128]


def test_int8_static_models_are_refused(digits_calib, tmp_path):
    qm = ql.quantize(zoo.load_model("digits-cnn"), ql.Static(), calib_data=digits_calib.inputs[:64])
    with pytest.raises(InputError, match="format='onnx' or 'torchscript'"):
        ql.export(qm, tmp_path / "s.pt2", format="pt2")
    assert not list(tmp_path.iterdir())
