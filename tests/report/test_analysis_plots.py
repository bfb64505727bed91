"""The analysis PNGs: sensitivity bars, per-layer SQNR line, activation histograms, plan."""

from __future__ import annotations

import math

from quantlens.analysis.layers import LayerComparison, LayerError
from quantlens.analysis.planner import LayerChoice, MixedPrecisionPlan, UniformPoint
from quantlens.analysis.ranges import ActivationStats, ObserverRange, RangeReport
from quantlens.analysis.sensitivity import LayerSensitivity, SensitivityResult
from quantlens.report.analysis_plots import ANALYSIS_PLOT_FILES, write_analysis_plots

PNG = b"\x89PNG\r\n\x1a\n"


def _results():
    sens = SensitivityResult([LayerSensitivity(f"l{i}", "Linear", 100, 400, 100, 90.0, 1.0 / (i + 1))
                              for i in range(5)], "accuracy", "%", "points", 99.0, 97.0, 2.0, 450, False, "swap")
    layers = LayerComparison([LayerError("a", "QLinear", "a", math.inf, 30.0, 0.99, 0.1, 30.0, 35.0),
                              LayerError("b", "QLinear", "b", 30.0, 20.0, 0.98, 0.2, 20.4, 22.0, jump=True),
                              LayerError("c", "LayerNorm", "c", 20.0, 21.0, 0.98, 0.2, math.inf, None)], samples=8)
    ranges = RangeReport([ActivationStats("a", "Linear", 100, -1.0, 9.0, 0.0, 1.0, {}, 9.0, 0.01, [5, 80, 10, 1, 0, 1],
                                          [-1, 0.5, 2, 4, 6, 8, 9],
                                          [ObserverRange("minmax", -1, 9, 30.0, 0.0),
                                           ObserverRange("percentile", -1, 4, 36.0, 0.01)])], 8, 8, "input")
    plan = MixedPrecisionPlan(None, [LayerChoice("a", "Linear", 100, 4, 60, 0.1)], "accuracy", "%", "points", 99.0,
                              {"max_drop": 1.0}, 0.1, 98.5, 0.5, 60_000, 400_000, True,
                              [UniformPoint(8, 110_000, 98.9, 0.1), UniformPoint(4, 60_000, 97.0, 2.0)])
    return sens, layers, ranges, plan


def test_every_plot_is_a_png(tmp_path):
    sens, layers, ranges, plan = _results()
    paths = write_analysis_plots(tmp_path, sensitivity=sens, layers=layers, ranges=ranges, plan=plan)
    assert sorted(p.name for p in paths) == sorted(ANALYSIS_PLOT_FILES.values())
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG and len(data) > 5_000


def test_only_given_results_are_plotted(tmp_path):
    sens, *_ = _results()
    assert [p.name for p in write_analysis_plots(tmp_path, sensitivity=sens)] == ["sensitivity.png"]
