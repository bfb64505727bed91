"""Acceptance of the mixed-precision planner on the real zoo models (small data subsets).

digits-cnn: the planner chooses 8/4/2 bits or float for its 6 Conv2d layers and its
Linear head (WeightOnly with modules=("linear", "conv2d")), and int8-or-float per layer
through Static.
MiniLM: the planner chooses 8/4/2 bits or float per Linear layer of the last encoder block
and the pooler (the other blocks are skipped to keep the test fast; the benchmark plans all
37 layers). In both, the plan meets its budget when measured, and at the size of a
uniform 4-bit config it is no worse on size or drop and
strictly better on one of them.
"""

from __future__ import annotations

import warnings

import pytest

import quantlens as ql
from quantlens import zoo
from quantlens.analysis import search_plan
from quantlens.eval.size import memory_bytes
from quantlens.methods import Static, WeightOnly


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("transformers")
    try:
        model = zoo.load_model("minilm")
    except Exception as exc:  # noqa: BLE001 - the model package is optional
        pytest.skip(f"MiniLM not available: {exc}")
    return model, zoo.load_dataset("sentences", "test").batches(16)[:1]


def test_digits_cnn_plan_meets_budget_and_beats_uniform_at_equal_size(digits_model, digits_test):
    x, y = digits_test  # 192 test images
    method = WeightOnly(bits=8, group_size=None, modules=("linear", "conv2d"))
    plan = search_plan(digits_model, (x, y), method=method, candidates=(8, 4, 2, None), max_accuracy_drop=1.0,
                       compare_uniform=False)
    assert len(plan.layers) == 7 and plan.metric == "accuracy"
    assert plan.met_budget and plan.measured_drop <= 1.0 and plan.size_bytes < plan.float_bytes
    u4_size = memory_bytes(ql.quantize(digits_model, method.replace(bits=4, symmetric=None)))[0]
    sized = search_plan(digits_model, (x, y), method=method, candidates=(8, 4, 2), target_size=u4_size)
    u4 = next(u for u in sized.uniform if u.bits == 4)
    assert u4.size_bytes == u4_size and sized.met_budget and sized.size_bytes <= u4.size_bytes
    assert sized.measured_drop <= u4.drop
    assert sized.measured_drop < u4.drop or sized.size_bytes < u4.size_bytes


def test_digits_cnn_static_plan_keeps_layers_float_within_budget(digits_model, digits_test, digits_calib):
    x, y = digits_test
    static = search_plan(digits_model, (x[:128], y[:128]), method=Static(observer="minmax"), candidates=(8, None),
                         calib_data=digits_calib[:64], max_accuracy_drop=0.5, compare_uniform=False)
    assert static.met_budget and static.measured_drop <= 0.5
    assert static.size_bytes < static.float_bytes


@pytest.mark.slow
def test_minilm_plan_meets_budget_and_beats_uniform_at_equal_size(minilm):
    model, data = minilm
    method = WeightOnly(bits=4, group_size=32, skip=("encoder.layer.[0-4].*",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 16 sentences: a deliberately small subset
        plan = search_plan(model, data, method=method, candidates=(4, None), max_accuracy_drop=0.3,
                           compare_uniform=False)
        assert plan.metric == "cosine" and len(plan.layers) == 7
        assert plan.met_budget and plan.measured_drop <= 0.3
        assert plan.bits["pooler.dense"] == 4  # the pooler does not feed the mean-pooled embedding
        u4_size = memory_bytes(ql.quantize(model, method))[0]
        sized = search_plan(model, data, method=method, candidates=(8, 4, 2), target_size=u4_size)
    u4 = next(u for u in sized.uniform if u.bits == 4)
    assert u4.size_bytes == u4_size and sized.met_budget and sized.size_bytes <= u4.size_bytes
    # at most the uniform config's size and drop, and strictly better on one of them
    assert sized.measured_drop <= u4.drop
    assert sized.measured_drop < u4.drop or sized.size_bytes < u4.size_bytes
