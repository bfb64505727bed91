"""Which layers a quantized model left in float: counted, with the reason, in the comparison
rows."""

import copy

import quantlens as ql
from quantlens.compare.run import run_comparison
from quantlens.eval import coverage


def test_float_layers_are_counted_with_the_reason(digits_model, digits_test_128):
    comparison = run_comparison(
        digits_model,
        {"linear-only": ql.WeightOnly(bits=8, group_size=None), "dynamic": ql.Dynamic()},
        data=digits_test_128,
        reps=1,
        warmup=0,
        memory=False,
    )
    w8, dynamic = comparison.rows[1:]
    for row in (w8, dynamic):
        assert (row.layers_quantized, row.layers_float) == (1, 12)
        assert row.float_kinds == {"Conv2d": 6, "BatchNorm2d": 6}
    assert any(n.startswith("6 Conv2d left float (") and "linear" in n for n in w8.notes), w8.notes


def test_weight_layers_a_summary_does_not_mention_count_as_float(digits_model):
    from quantlens.methods.base import QuantSummary

    q = copy.deepcopy(digits_model)
    q.quantlens_summary = QuantSummary()
    q.quantlens_summary.add("fc", "Linear", "quantized")
    q.quantlens_summary.add("stem.1", "BatchNorm2d", "float", reason="no quantized BatchNorm2d")
    q.quantlens_config = ql.WeightOnly(bits=8, group_size=None)
    left = coverage.float_layers(digits_model, q)
    assert [x["name"] for x in left] == [
        "stem.1",
        "stem.0",
        "block1.conv1",
        "block1.conv2",
        "down.0",
        "block2.conv1",
        "block2.conv2",
    ]
    assert left[0]["reason"] == "no quantized BatchNorm2d"
    assert left[1] == {
        "name": "stem.0",
        "kind": "Conv2d",
        "reason": "not in WeightOnly's modules=('linear',)",
    }
