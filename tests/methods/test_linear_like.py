"""Hugging Face Conv1D (GPT-2's transposed Linear) is quantized as the nn.Linear it computes."""

from __future__ import annotations

import tempfile

import pytest
import torch
from helpers import assert_similar, random_tensor
from torch import nn

import quantlens as ql
from quantlens.analysis.modules import dequantized_weight
from quantlens.methods import linear_like

pytorch_utils = pytest.importorskip("transformers.pytorch_utils")


class TwoConv1D(nn.Module):
    """A GPT-2 MLP: Conv1D(nf=64, nx=32) -> GELU -> Conv1D(nf=32, nx=64), plus a square one."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c_fc = pytorch_utils.Conv1D(64, 32)
        self.c_proj = pytorch_utils.Conv1D(32, 64)
        self.c_sq = pytorch_utils.Conv1D(32, 32)
        for m in (self.c_fc, self.c_proj, self.c_sq):
            nn.init.normal_(m.weight, std=0.2)
            nn.init.normal_(m.bias, std=0.1)

    def forward(self, x):
        return self.c_sq(self.c_proj(torch.nn.functional.gelu(self.c_fc(x))))


def test_make_linear_computes_the_same_function():
    model = TwoConv1D().eval()
    x = random_tensor(3, 5, 32)
    expected = model(x)
    found = linear_like.make_linear(model)
    assert found == {"Hugging Face Conv1D": 3}
    assert all(type(m) is nn.Linear for m in (model.c_fc, model.c_proj, model.c_sq))
    assert model.c_fc.weight.shape == (64, 32)
    assert_similar(model(x), expected, atol=1e-5)


@pytest.mark.parametrize(
    "config", [ql.WeightOnly(bits=8, group_size=None), ql.Dynamic()], ids=["w8", "dynamic"]
)
def test_every_conv1d_is_quantized_and_the_caller_keeps_its_model(config, one_thread):
    model = TwoConv1D().eval()
    x = random_tensor(4, 32)
    qm = ql.quantize(model, config)
    assert len(qm.quantlens_summary.quantized) == 3
    assert any(
        "made 3 Hugging Face Conv1D layer(s) nn.Linear" in n for n in qm.quantlens_summary.notes
    )
    assert type(model.c_fc).__name__ == "Conv1D"  # not in place
    assert_similar(qm(x), model(x), min_cosine=0.999)


def test_weight_only_conv1d_saves_and_loads(one_thread):
    model = TwoConv1D().eval()
    qm = ql.quantize(model, ql.WeightOnly(bits=4, group_size=32))
    x = random_tensor(2, 32)
    with tempfile.TemporaryDirectory() as d:
        ql.save(qm, d, source={"kind": "factory", "path": f"{__name__}:TwoConv1D"})
        loaded = ql.load(d, trust_code=True)
    assert_similar(loaded(x), qm(x), atol=1e-6)


def test_analysis_compares_a_conv1d_weight_in_linear_orientation():
    """The square Conv1D's float weight is transposed before it meets its QLinear's: the
    8-bit weight's cosine is ~1 (untransposed it would be ~0)."""
    model = TwoConv1D().eval()
    qm = ql.quantize(model, ql.WeightOnly(bits=8, group_size=None))
    ref, got = dequantized_weight(model.c_sq), dequantized_weight(qm.c_sq)
    assert ref.shape == got.shape == (32, 32)
    assert_similar(got, ref, min_cosine=0.9999)
