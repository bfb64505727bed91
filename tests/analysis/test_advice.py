"""advise / apply_advice: one concrete suggestion per problem layer, from the measurements."""

from __future__ import annotations

import torch
from helpers import generator
from torch import nn

import quantlens as ql
from quantlens.analysis import advise, apply_advice, compare_layers, sensitivity
from quantlens.analysis.advice import (
    MIN_DROP_POINTS,
    MIN_NOISE_PERCENT,
    MIN_OBSERVER_GAIN_DB,
    quantizes_activations,
)
from quantlens.analysis.layers import LayerComparison, LayerError
from quantlens.analysis.ranges import ActivationStats, ObserverRange, RangeReport
from quantlens.analysis.scoring import METRICS, Metric
from quantlens.analysis.sensitivity import LayerSensitivity, SensitivityResult
from quantlens.methods.base import resolve


def _sens(rows, full_drop, groups=None, min_loss=METRICS["accuracy"].min_loss):
    rows = [LayerSensitivity(n, "Conv2d", p, p * 4, p, 90.0, d) for n, p, d in rows]
    return SensitivityResult(
        rows,
        "accuracy",
        "%",
        "points",
        99.0,
        99.0 - full_drop,
        full_drop,
        450,
        False,
        "requantize",
        None,
        [],
        groups or {},
        min_loss,
    )


def _layer(name, w_db, out_db):
    return LayerError(name, "Conv2d", name, 40.0, out_db, 0.99, 0.1, out_db, w_db, 0.99, 0.1)


def _act(name, best, ratio, gain):
    ranges = [
        ObserverRange("minmax", -1, 50, 20.0, 0.0),
        ObserverRange(best, -1, 5, 20.0 + gain, 0.001),
    ]
    return ActivationStats(name, "Conv2d", 1000, -1, 50, 0, 1, {}, ratio, 0.01, [], [], ranges)


def test_static_rules_per_channel_observer_skip_and_qat():
    cfg = ql.Static(per_channel=False, observer="minmax")
    sens = _sens(
        [("a", 10_000, 1.0), ("b", 10_000, 0.9), ("c", 100, 0.8), ("d", 10_000, 0.01)],
        4.0,
        groups={"c": ["c", "c_bn"]},
    )
    layers = LayerComparison(
        [_layer("a", 15.0, 30.0), _layer("b", 45.0, 30.0), _layer("c", 45.0, 30.0)]
    )
    ranges = RangeReport(
        [_act("b", "percentile", 25.0, 6.0), _act("c", "mse", 1.0, 0.1)], 64, 8, "input"
    )
    tips = advise(cfg, sens, layers=layers, ranges=ranges)
    by_layer = {t.layer: t for t in tips}
    assert [t.layer for t in tips] == ["a", "b", "c", ""]  # "d" explains too little to be a problem
    assert by_layer["a"].action == "per_channel" and by_layer["a"].override.per_channel
    assert by_layer["b"].action == "observer" and by_layer["b"].override.observer == "percentile"
    assert "+6.0 dB" in by_layer["b"].evidence
    assert by_layer["c"].action == "skip" and by_layer["c"].skip == ("c", "c_bn")
    assert by_layer[""].action == "qat"  # the worst layer explains 25% of the drop
    fixed = apply_advice(cfg, tips)
    assert resolve(fixed, "c") is None and resolve(fixed, "c_bn") is None
    assert resolve(fixed, "a").per_channel and resolve(fixed, "b").observer == "percentile"
    untouched = resolve(fixed, "d")
    assert (untouched.per_channel, untouched.observer) == (False, "minmax")
    assert all(str(t) and t.to_dict()["action"] for t in tips)


def test_weight_only_fragile_layer_gets_more_bits(toy_method):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)
    ).eval()
    with torch.no_grad():
        model[0].bias[0] = -1e3
        model[2].weight[:, 0] = 1.0
    x = torch.randn(128, 16, generator=generator(0))
    cfg = toy_method(bits=4)
    sens = sensitivity(model, x, cfg)
    cmp = compare_layers(model, ql.quantize(model, cfg), x)
    tips = advise(cfg, sens, layers=cmp)
    assert tips[0].layer == "2" and tips[0].action == "raise_bits" and tips[0].override.bits == 8
    assert not any(t.action == "qat" for t in tips)  # weight-only: no activation quantization
    fixed = apply_advice(cfg, tips)
    assert resolve(fixed, "2").bits == 8 and resolve(fixed, "0").bits == 4
    better = sensitivity(model, x, fixed)
    assert better.full_drop < sens.full_drop


def test_sqnr_metric_advice_needs_a_meaningful_noise_floor():
    # Static on a single Linear: 32 dB output SQNR (0.06% noise power) is not a problem to fix
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 4)).eval()
    x = torch.randn(256, 16, generator=generator(0))
    cfg = ql.Static(observer="minmax")
    sens = sensitivity(model, x, cfg)
    assert sens.metric == "sqnr" and 0.0 < sens.full_drop < MIN_NOISE_PERCENT
    assert advise(cfg, sens) == []
    # calibrated on data with one huge value: min-max spends the 8-bit input grid on it
    spiky = x.clone()
    spiky[0, 0] = 2_000.0
    sens = sensitivity(model, x, cfg, calib_data=spiky)
    assert sens.full_drop > 10 * MIN_NOISE_PERCENT
    tips = advise(cfg, sens)
    assert [t.layer for t in tips] == ["0"]


def test_accuracy_drop_below_the_floor_gives_no_advice():
    sens = _sens([("a", 10_000, 0.15), ("b", 10_000, 0.05)], 0.18)  # under MIN_DROP_POINTS
    assert advise(ql.Static(), sens) == []
    sens = _sens([("a", 10_000, 0.15), ("b", 10_000, 0.4)], 0.5)
    assert [t.layer for t in advise(ql.Static(), sens)] == ["b"]


def test_the_floor_is_the_metrics_not_its_units():
    assert [METRICS[m].min_loss for m in ("accuracy", "cosine", "agreement", "sqnr")] == [
        MIN_DROP_POINTS
    ] * 3 + [MIN_NOISE_PERCENT]
    user = Metric(
        "mine", "%", lambda ref, out: 0.0
    )  # a user metric in %: "points" lost, but of unknown scale
    assert user.loss_unit == "points" and user.min_loss == 0.0
    sens = _sens([("a", 10_000, 0.15), ("b", 10_000, 0.05)], 0.18, min_loss=user.min_loss)
    assert [t.layer for t in advise(ql.Static(), sens)] == ["a", "b"]  # no 0.2-point floor


def test_observer_tip_needs_a_measured_gain_not_just_an_outlier_ratio():
    cfg = ql.Static(observer="minmax")
    sens = _sens([("a", 10_000, 1.0), ("b", 10_000, 0.9)], 2.0)
    layers = LayerComparison([_layer("a", 45.0, 30.0), _layer("b", 45.0, 30.0)])
    # both layers have 25x outliers; only b's best observer measures above MIN_OBSERVER_GAIN_DB
    ranges = RangeReport(
        [
            _act("a", "percentile", 25.0, 0.1),
            _act("b", "percentile", 25.0, MIN_OBSERVER_GAIN_DB + 0.5),
        ],
        64,
        8,
        "input",
    )
    tips = {t.layer: t for t in advise(cfg, sens, layers=layers, ranges=ranges)}
    assert tips["a"].action != "observer"
    assert tips["b"].action == "observer" and "+1.5 dB" in tips["b"].evidence


def test_only_methods_with_an_activation_observer_count_as_quantizing_activations():
    assert quantizes_activations(ql.Static()) and quantizes_activations(ql.QAT())
    assert not quantizes_activations(ql.WeightOnly()) and not quantizes_activations(ql.Dynamic())
