"""sensitivity: one layer at a time (and the reverse), ranked, cached float outputs."""

from __future__ import annotations

import pytest
import torch
from analysis_helpers import SideBranch, make_mlp
from helpers import generator
from torch import nn

import quantlens as ql
from quantlens.analysis import sensitivity
from quantlens.analysis.scoring import METRICS, Evaluator
from quantlens.analysis.sensitivity import SensitivityResult


def _mlp_data(n=256, seed=0):
    g = generator(seed)
    x = torch.randn(n, 16, generator=g)
    return x


def test_forward_ranks_the_layer_that_hurts(toy_method):
    model = make_mlp()
    with (
        torch.no_grad()
    ):  # make layer "2" fragile: a huge weight on a dead input sets every row's scale
        model[0].bias[0] = -1e3  # hidden unit 0 is always 0 after the ReLU
        model[2].weight[:, 0] = 50.0
    res = sensitivity(model, _mlp_data(), toy_method(bits=2))
    assert res.metric == "sqnr" and res.strategy == "swap" and not res.reverse
    assert res.min_loss == METRICS["sqnr"].min_loss
    assert next(r.name for r in res.rows) == "2"
    assert {r.name for r in res.rows} == {"0", "2", "4"}
    assert res["2"].params == 64 * 64 + 64 and res["2"].bytes_saved > 0
    assert all(r.drop > 0 for r in res.rows)
    text = str(res)
    assert "sensitivity" in text and "2" in text
    assert res.to_dict()["rows"][0]["name"] == "2"
    back = SensitivityResult.from_dict(res.to_dict())
    assert back.to_dict() == res.to_dict() and back.config == res.config and back["2"] == res["2"]


def test_reverse_mode_and_float_runs_once(toy_method):
    model = make_mlp()
    data = _mlp_data()
    ev = Evaluator(model, data, metric="sqnr")
    res = sensitivity(model, data, toy_method(bits=2), reverse=True, evaluator=ev)
    assert res.reverse
    # float model ran once (in the Evaluator); then 1 full + 3 variants
    assert ev.runs == 1 + 1 + 3
    assert all(r.drop >= 0 for r in res.rows)  # keeping a layer float never makes it worse here


def test_accuracy_metric_with_labels_and_subset(toy_method, digits_model, digits_test):
    x, y = digits_test.as_pair()
    res = sensitivity(digits_model, (x, y), toy_method(bits=2), max_batches=2)  # 128 of 450 samples
    assert res.metric == "accuracy" and res.samples == 128
    assert [r.name for r in res.rows] == ["fc"]
    assert any("single quantizable layer" in n for n in res.notes)


def test_small_data_warns_with_sample_count(toy_method):
    model = make_mlp()
    with pytest.warns(UserWarning, match="only 20 sample"):
        sensitivity(model, _mlp_data(20), toy_method(bits=4))


def _tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),
    ).eval()


def test_static_uses_requantize_with_fused_groups():
    model = _tiny_cnn()
    x = torch.rand(128, 1, 8, 8, generator=generator(0))
    res = sensitivity(model, x, ql.Static(observer="minmax"), max_batches=2)
    assert res.strategy == "requantize" and res.metric == "sqnr"
    assert {r.name for r in res.rows} == {"0", "3", "7"}
    assert res.rows[0].drop >= res.rows[-1].drop > 0
    # one layer quantized costs less than all of them
    assert res.full_drop > res.rows[0].drop


def test_a_layer_the_outputs_never_see_is_noted(toy_method):
    res = sensitivity(SideBranch().eval(), _mlp_data(), toy_method(bits=2))
    assert res["side"].drop == 0.0 and res["main"].drop > 0
    assert any(n.startswith("side: the outputs are bit-identical") for n in res.notes)
    assert not any(n.startswith("main") for n in res.notes)
