"""plan_mixed_precision / search_plan: greedy by loss per byte, verified by measuring."""

from __future__ import annotations

import json

import pytest
import torch
from analysis_helpers import SideBranch
from helpers import generator
from torch import nn

import quantlens as ql
from quantlens.analysis import plan_mixed_precision, planner, search_plan
from quantlens.errors import ConfigError
from quantlens.methods.base import config_from_dict, resolve


def _deep_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(
        *[m for _ in range(4) for m in (nn.Linear(64, 64), nn.ReLU())], nn.Linear(64, 4)
    ).eval()
    with (
        torch.no_grad()
    ):  # layer "2" is fragile: a huge weight on an always-dead input sets every row's scale
        model[0].bias[0] = -1e3
        model[2].weight[:, 0] = 50.0
    return model


@pytest.fixture(scope="module")
def mlp_data():
    return torch.randn(256, 64, generator=generator(0))


def test_accuracy_budget_is_met_and_fragile_layer_keeps_more_bits(toy_method, mlp_data):
    model = _deep_mlp()
    plan = search_plan(
        model, mlp_data, method=toy_method(bits=8), candidates=(8, 4, 2, None), min_sqnr_db=20
    )
    assert plan.metric == "sqnr" and plan.budget == {"min_sqnr_db": 20}
    assert plan.met_budget and plan.measured_value >= 20
    assert plan.bits["2"] in (8, None)  # the fragile layer is not pushed to 4/2 bits
    assert plan.size_bytes < plan.float_bytes
    # the config is an ordinary one: quantize applies it, per-layer bits as planned
    qm = ql.quantize(model, plan.config)
    for name, bits in plan.bits.items():
        cfg = resolve(plan.config, name)
        assert (cfg is None) if bits is None else cfg.bits == bits
        assert (type(qm.get_submodule(name)).__name__ == "Linear") == (bits is None)
    assert "meets" in str(plan) and json.dumps(plan.to_dict())


def test_size_budget_beats_uniform_at_equal_size(toy_method, mlp_data):
    model = _deep_mlp()
    first = search_plan(
        model, mlp_data, method=toy_method(bits=8), candidates=(8, 4, 2), min_sqnr_db=10
    )
    u4 = next(u for u in first.uniform if u.bits == 4)
    plan = search_plan(
        model,
        mlp_data,
        method=toy_method(bits=8),
        candidates=(8, 4, 2),
        target_size=u4.size_bytes,
        compare_uniform=False,
    )
    assert plan.size_bytes <= u4.size_bytes and plan.met_budget
    assert plan.measured_value >= u4.value  # at most the size of uniform 4-bit, at least its SQNR


def test_config_round_trips_and_reports_unknown_layers(toy_method, mlp_data):
    model = _deep_mlp()
    # 4 bits or float: the fragile layer "2" stays float (a skip), the others go to 4 bits
    cfg = plan_mixed_precision(
        model, mlp_data, method=toy_method(bits=8), candidates=(8, 4, None), min_sqnr_db=15
    )
    assert cfg.skip == ("2",) and cfg.bits == 4
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    other = nn.Sequential(nn.Linear(64, 4))  # has a module "0" but no "2"
    with pytest.raises(ConfigError, match="match no module") as info:
        ql.quantize(other, cfg)
    assert "'2'" in str(info.value)


def test_single_layer_model_and_bad_budgets(toy_method):
    model = nn.Sequential(nn.Linear(16, 4)).eval()
    x = torch.randn(128, 16, generator=generator(0))
    plan = search_plan(model, x, method=toy_method(bits=8), candidates=(8, 4, None), min_sqnr_db=25)
    assert list(plan.bits) == ["0"] and plan.met_budget
    with pytest.raises(ConfigError, match="below the smallest size"):
        search_plan(model, x, method=toy_method(bits=8), candidates=(8, 4), target_size=10)
    with pytest.raises(ConfigError, match="not a bit width"):
        search_plan(model, x, method=toy_method(bits=8), candidates=(8, "four"))


def test_layers_that_do_not_reach_the_outputs_are_reported_and_tables_are_reused(
    toy_method, mlp_data, monkeypatch
):
    model = SideBranch(64, 8).eval()
    plan = search_plan(
        model,
        mlp_data,
        method=toy_method(bits=8),
        candidates=(8, 4, 2, None),
        min_sqnr_db=30,
        compare_uniform=False,
    )
    assert (
        plan.unused == ["side"] and plan.bits["side"] == 2
    )  # free to lower: the outputs never see it
    assert plan.table.loss["side"] == [0.0] * 4 and plan.table.loss["main"][3] > 0
    assert "do not reach" in str(plan) and plan.to_dict()["table"]["identical"] == ["side"]

    def measured_again(*args, **kwargs):
        raise AssertionError("the table given was measured again")

    monkeypatch.setattr(planner, "_measure_table", measured_again)
    again = search_plan(
        model,
        mlp_data,
        method=toy_method(bits=8),
        candidates=(8, 4, 2, None),
        min_sqnr_db=30,
        compare_uniform=False,
        table=plan.table,
    )
    assert again.bits == plan.bits and again.measured_drop == plan.measured_drop
    with pytest.raises(ConfigError, match="reuse a table only"):
        search_plan(model, mlp_data, method=toy_method(bits=8), candidates=(8, 4), table=plan.table)
