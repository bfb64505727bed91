"""The analysis PNGs: sensitivity bars, per-layer SQNR line, activation histograms, plan.
The ``*_figure`` functions return the matplotlib Figure each PNG is drawn from, so the
tests check what is drawn, not only that a PNG was written."""

from __future__ import annotations

import math

import pytest
from matplotlib.collections import PathCollection

from quantlens.analysis.layers import LayerComparison, LayerError
from quantlens.analysis.planner import LayerChoice, MixedPrecisionPlan, UniformPoint
from quantlens.analysis.ranges import ActivationStats, ObserverRange, RangeReport
from quantlens.analysis.sensitivity import LayerSensitivity, SensitivityResult
from quantlens.report.analysis_plots import (
    ANALYSIS_PLOT_FILES,
    activation_figure,
    layer_sqnr_figure,
    plan_figure,
    sensitivity_figure,
    write_analysis_plots,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _results():
    sens = SensitivityResult(
        [LayerSensitivity(f"l{i}", "Linear", 100, 400, 100, 90.0, 1.0 / (i + 1)) for i in range(5)],
        "accuracy",
        "%",
        "points",
        99.0,
        97.0,
        2.0,
        450,
        False,
        "swap",
    )
    layers = LayerComparison(
        [
            LayerError("a", "QLinear", "a", math.inf, 30.0, 0.99, 0.1, 30.0, math.inf),
            LayerError(
                "a_bn",
                "BatchNorm1d",
                "a_bn",
                30.0,
                28.0,
                0.99,
                0.1,
                math.inf,
                math.inf,
                quantized=False,
            ),
            LayerError("b", "QLinear", "b", 28.0, 20.0, 0.98, 0.2, 20.4, 22.0, jump=True),
            LayerError("c", "QLinear", "c", 20.0, 21.0, 0.98, 0.2, 35.0, 41.0),
        ],
        samples=8,
    )
    ranges = RangeReport(
        [
            ActivationStats(
                "a",
                "Linear",
                100,
                -1.0,
                9.0,
                0.0,
                1.0,
                {},
                9.0,
                0.01,
                [5, 80, 10, 1, 0, 1],
                [-1, 0.5, 2, 4, 6, 8, 9],
                [
                    ObserverRange("minmax", -1, 9, 30.0, 0.0),
                    ObserverRange("percentile", -1, 4, 36.0, 0.01),
                ],
            )
        ],
        8,
        8,
        "input",
    )
    plan = MixedPrecisionPlan(
        None,
        [LayerChoice("a", "Linear", 100, 4, 60, 0.1)],
        "accuracy",
        "%",
        "points",
        99.0,
        {"max_drop": 1.0},
        0.1,
        98.5,
        0.5,
        60_000,
        400_000,
        True,
        [UniformPoint(8, 110_000, 98.9, 0.1), UniformPoint(4, 60_000, 97.0, 2.0)],
    )
    return sens, layers, ranges, plan


@pytest.fixture()
def close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


@pytest.mark.slow
def test_every_plot_is_a_png(tmp_path):
    sens, layers, ranges, plan = _results()
    paths = write_analysis_plots(
        tmp_path, sensitivity=sens, layers=layers, ranges=ranges, plan=plan
    )
    assert sorted(p.name for p in paths) == sorted(ANALYSIS_PLOT_FILES.values())
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG and len(data) > 5_000


def test_only_given_results_are_plotted(tmp_path):
    sens, *_ = _results()
    assert [p.name for p in write_analysis_plots(tmp_path, sensitivity=sens)] == ["sensitivity.png"]


def test_sensitivity_has_one_bar_per_layer_most_sensitive_on_top(close_figures):
    sens, *_ = _results()
    ax = sensitivity_figure(sens).axes[0]
    bars = ax.patches
    assert len(bars) == len(sens.rows) == 5
    widths = [b.get_width() for b in bars]  # drawn bottom to top
    assert widths == pytest.approx([r.drop for r in sens.rows][::-1])
    assert [t.get_text() for t in ax.get_yticklabels()] == [r.name for r in sens.rows][::-1]
    assert len(sensitivity_figure(sens, top=3).axes[0].patches) == 3


def test_histogram_has_one_vertical_line_per_observer_bound(close_figures):
    *_, ranges, _ = _results()
    stats = ranges.layers[0]
    ax = activation_figure(ranges).axes[0]
    vertical = sorted(line.get_xdata()[0] for line in ax.lines)
    assert len(vertical) == 2 * len(stats.ranges) == 4
    assert vertical == sorted(b for r in stats.ranges for b in (r.lo, r.hi))
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {
        "minmax 30.0 dB",
        "percentile 36.0 dB",
    }


def test_layer_sqnr_plots_quantized_layers_and_marks_exact_points_apart(close_figures):
    _, layers, *_ = _results()
    ax = layer_sqnr_figure(layers).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "a",
        "b",
        "c",
    ]  # the float BatchNorm is left out
    output, own, weight = (
        line
        for line in ax.lines
        if line.get_label() in ("output (accumulated)", "own (layer alone)", "weight")
    )
    assert list(output.get_ydata()) == [30.0, 20.0, 21.0] and list(own.get_ydata()) == [
        30.0,
        20.4,
        35.0,
    ]
    assert math.isnan(weight.get_ydata()[0]) and list(weight.get_ydata()[1:]) == [
        22.0,
        41.0,
    ]  # a gap, no 100 dB
    markers = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [list(c.get_offsets()[:, 0]) for c in markers] == [
        [0.0]
    ]  # the exact weight of "a", drawn apart
    top = ax.get_ylim()[1]
    assert 41.0 < top < 50.0 and markers[0].get_offsets()[0, 1] > 41.0
    assert any("jumps" in t.get_text() for t in ax.texts)


def test_plan_shows_the_plan_and_each_uniform_point(close_figures):
    *_, plan = _results()
    ax = plan_figure(plan).axes[0]
    points = sorted(tuple(p) for c in ax.collections for p in c.get_offsets())
    assert points == sorted([(60.0, 0.5), (110.0, 0.1), (60.0, 2.0)])  # KB, drop
