"""compare_layers: per-layer output/weight error, fused-module matching, the error jump."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from analysis_helpers import make_mlp, swap_qlinear
from helpers import generator
from torch import nn

import quantlens as ql
from quantlens.analysis import compare_layers, sensitivity
from quantlens.errors import InputError


def test_weight_only_mlp_inherited_and_own_error():
    model = make_mlp()
    qm = swap_qlinear(model, {"2": 2})  # only the middle layer, 2-bit
    x = torch.randn(64, 16, generator=generator(0))
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
    result = compare_layers(model, qm, torch.randn(32, 16, generator=generator(1)))
    assert result.jump.name == "2"
    assert result["0"].out_sqnr_db > result["2"].out_sqnr_db
    assert 0.9 < result["4"].out_cosine <= 1.0
    assert "error jumps here" in str(result)


def test_static_fused_layers_are_matched(digits_model, digits_static, digits_test):
    result = compare_layers(digits_model, digits_static, digits_test.inputs[:64])
    names = [r.name for r in result.layers]
    assert names == [
        "stem.0",
        "block1.conv1",
        "block1.conv2",
        "down.0",
        "block2.conv1",
        "block2.conv2",
        "fc",
    ]
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


# --- QAT: prepared (fake-quant, training) and converted --------------------------------------


@pytest.fixture(scope="module")
def qat_prepared(digits_model, digits_calib):
    qat = ql.prepare_qat(digits_model, ql.QAT())
    with (
        torch.no_grad()
    ):  # a few training-mode steps: observers and BatchNorm statistics move, as in training
        for start in (0, 64):
            qat(digits_calib.inputs[start : start + 64])
    return qat


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_prepared_qat_folds_bn_like_the_fused_module_and_changes_nothing(
    digits_model, qat_prepared, digits_test
):
    assert qat_prepared.training
    before, float_before = _snapshot(qat_prepared), _snapshot(digits_model)
    modes = [m.training for m in qat_prepared.modules()]
    result = compare_layers(digits_model, qat_prepared, digits_test.inputs[:128])
    after = qat_prepared.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []  # observer ranges, BatchNorm statistics and fake-quant scales untouched
    assert all(torch.equal(v, digits_model.state_dict()[k]) for k, v in float_before.items())
    assert [m.training for m in qat_prepared.modules()] == modes and not digits_model.training
    kinds = {r.name: r.kind for r in result.layers}
    assert kinds["stem.0"] == "ConvBnReLU2d" and kinds["block1.conv2"] == "ConvBn2d"
    for row in result.layers:  # the fake-quantized folded weight against the float folded weight
        assert row.weight_sqnr_db > 35, row  # was 1.8-11 dB when the float side alone was folded
        assert row.out_sqnr_db > 25 and row.quantized and row.isolated
    assert result.jump is not None


def test_converted_qat_model(digits_model, qat_prepared, digits_test):
    converted = ql.convert(qat_prepared)
    result = compare_layers(digits_model, converted, digits_test.inputs[:128])
    assert [r.name for r in result.layers] == [
        "stem.0",
        "block1.conv1",
        "block1.conv2",
        "down.0",
        "block2.conv1",
        "block2.conv2",
        "fc",
    ]
    assert result.fused["stem.0"] == ["stem.1", "stem.2"] and not result.unmatched
    for row in result.layers:
        assert row.weight_sqnr_db > 35 and row.out_sqnr_db > 20 and row.isolated
        assert (
            row.own_sqnr_db >= row.out_sqnr_db - 0.5
        )  # alone a layer is no worse than with inherited error


# --- own error measured in isolation ---------------------------------------------------------


def test_isolated_own_error_puts_the_jump_where_sensitivity_does(digits_model, digits_test):
    # 2-bit per-channel weights on the unfused CNN. The old estimate (own noise = output noise
    # minus input noise) gave 3 of 7 convs own = inf, because a conv's output SQNR can beat its
    # input's, and put the jump on fc, which costs nothing alone. Fed the float input, every
    # quantized layer has a finite own error and the worst one is the layer sensitivity blames.
    x, y = digits_test.as_pair()  # all 450 test images
    cfg = ql.WeightOnly(bits=2, group_size=None, modules=("linear", "conv2d"))
    result = compare_layers(digits_model, ql.quantize(digits_model, cfg), x, max_batches=None)
    quantized = result.quantized
    assert [r.name for r in quantized] == [
        "stem.0",
        "block1.conv1",
        "block1.conv2",
        "down.0",
        "block2.conv1",
        "block2.conv2",
        "fc",
    ]
    assert all(math.isfinite(r.own_sqnr_db) and r.isolated for r in quantized)
    assert all(
        r.own_sqnr_db == math.inf for r in result.layers if not r.quantized
    )  # float BatchNorms add nothing
    assert [
        r.name for r in quantized if r.out_sqnr_db > r.in_sqnr_db
    ]  # the case the old estimate got wrong
    sens = sensitivity(digits_model, (x, y), cfg)
    assert result.jump.name == sens.rows[0].name == "block1.conv1"
    assert sens.rows[0].drop > 5.0 and sens["fc"].drop < 1.0


def test_static_own_error_feeds_the_quantized_kernel_the_float_input(
    digits_model, digits_static, digits_test
):
    result = compare_layers(digits_model, digits_static, digits_test.inputs[:64])
    for row in (
        result.layers
    ):  # int8 kernels called alone on the float input, quantized with their input's qparams
        assert row.isolated and row.own_sqnr_db > row.out_sqnr_db - 0.5 and row.own_sqnr_db > 25


def test_token_id_inputs_are_fed_as_they_are():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(64, 32), nn.Linear(32, 32)).eval()
    qm = ql.quantize(model, ql.WeightOnly(bits=4, group_size=32, modules=("linear", "embedding")))
    ids = torch.randint(0, 64, (16, 10), generator=generator(0))
    result = compare_layers(model, qm, ids)
    emb, lin = result.layers
    assert (
        emb.kind != "Embedding" and emb.isolated and lin.isolated
    )  # the ids reach the quantized table alone
    assert emb.own_sqnr_db == pytest.approx(
        emb.out_sqnr_db
    )  # nothing before it: alone = in the model
    assert math.isfinite(emb.own_sqnr_db) and lin.own_sqnr_db > lin.out_sqnr_db
