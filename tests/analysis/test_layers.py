"""compare_layers: per-layer output/weight error, fused-module matching, the error jump."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from analysis_helpers import make_mlp, swap_qlinear
from torch import nn

from quantlens.analysis import compare_layers
from quantlens.errors import InputError


def test_weight_only_mlp_inherited_and_own_error():
    model = make_mlp()
    qm = swap_qlinear(model, {"2": 2})  # only the middle layer, 2-bit
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    result = compare_layers(model, qm, x)
    assert [r.name for r in result.layers] == ["0", "2", "4"]
    first, mid, last = result.layers
    assert first.out_sqnr_db == math.inf and first.weight_sqnr_db == math.inf
    assert mid.in_sqnr_db == math.inf and mid.out_sqnr_db < 25 and mid.weight_sqnr_db < 25
    assert mid.kind == "QLinear" and mid.jump and result.jump is mid
    assert last.own_sqnr_db == math.inf  # the float layer adds no error, it only inherits it
    assert last.in_sqnr_db == pytest.approx(mid.out_sqnr_db, abs=1.0)  # only a ReLU in between
    assert not result.unmatched


def test_jump_is_the_worse_layer_not_the_first():
    model = make_mlp()
    qm = swap_qlinear(model, {"0": 8, "2": 2, "4": 8})
    result = compare_layers(model, qm, torch.randn(32, 16, generator=torch.Generator().manual_seed(1)))
    assert result.jump.name == "2"
    assert result["0"].out_sqnr_db > result["2"].out_sqnr_db
    assert 0.9 < result["4"].out_cosine <= 1.0
    assert "error jumps here" in str(result)


def test_static_fused_layers_are_matched(digits_model, digits_static, digits_test):
    result = compare_layers(digits_model, digits_static, digits_test[0][:64])
    names = [r.name for r in result.layers]
    assert names == ["stem.0", "block1.conv1", "block1.conv2", "down.0", "block2.conv1", "block2.conv2", "fc"]
    assert result.fused["stem.0"] == ["stem.1", "stem.2"]
    assert result["stem.0"].float_name == "stem.2"
    assert result["block1.conv2"].float_name == "block1.bn2"  # the ReLU after the add is not fused
    assert not result.unmatched
    for row in result.layers:  # int8 on a trained CNN: every layer well above 20 dB
        assert row.out_sqnr_db > 20 and row.weight_sqnr_db > 30 and row.out_cosine > 0.99
    assert result.jump is not None and result.samples == 64
    assert result.to_dict()["jump"] == result.jump.name


class _Wrapper(nn.Module):  # how the eager int8 fallback wraps a layer: "<name>.module"
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


def test_wrapped_names_are_mapped():
    model = make_mlp()
    qm = swap_qlinear(model, {"2": 4})
    qm[2] = _Wrapper(qm[2])
    result = compare_layers(model, qm, torch.randn(16, 16))
    assert [r.name for r in result.layers] == ["0", "2.module", "4"]
    assert result["2.module"].float_name == "2" and result["2.module"].weight_sqnr_db > 15


def test_unmatched_layers_are_reported():
    model = make_mlp()
    qm = swap_qlinear(model, {"2": 8})
    qm = nn.Sequential(OrderedDict([*list(qm.named_children())[:4], ("tail", qm[4])]))
    result = compare_layers(model, qm, torch.randn(8, 16))
    assert "4" in result.unmatched and "tail" in result.unmatched
    assert [r.name for r in result.layers] == ["0", "2"]


def test_nothing_matches_raises():
    with pytest.raises(InputError, match="no layer"):
        compare_layers(make_mlp(), nn.Sequential(nn.Identity()), torch.randn(4, 16))
