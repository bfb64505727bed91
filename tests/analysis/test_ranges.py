"""activation_ranges: statistics, histograms and each observer's clipping range and error."""

from __future__ import annotations

import pytest
import torch
from helpers import generator, heavy_tailed
from torch import nn

from quantlens.analysis import activation_ranges
from quantlens.errors import InputError


def test_heavy_tailed_layer_prefers_a_clipping_observer():
    # Laplace activations at 4 bits: min-max spends the grid on the tails, MSE clips them
    x = heavy_tailed(64 * 256, seed=3, outliers=()).float().reshape(256, 64)
    model = nn.Sequential(nn.Linear(64, 8)).eval()
    report = activation_ranges(model, x, bins=64, bits=4, observers=("minmax", "percentile", "mse"))
    stats = report["0"]
    assert stats.count == x.numel() and report.samples == 256
    assert stats.min == pytest.approx(float(x.min())) and stats.max == pytest.approx(float(x.max()))
    assert stats.mean == pytest.approx(float(x.mean()), abs=1e-4)
    assert stats.std == pytest.approx(float(x.std()), rel=1e-3)
    assert stats.outlier_ratio > 1.2 and stats.outlier_fraction > 0
    minmax = stats.range_of("minmax")
    assert (minmax.lo, minmax.hi) == pytest.approx((float(x.min()), float(x.max())))
    assert stats.best_observer != "minmax" and stats.clipping_gain_db >= 3 and stats.heavy_tailed
    assert stats.range_of(stats.best_observer).hi < minmax.hi  # it clipped the outliers
    assert len(stats.hist_counts) == 64 and len(stats.hist_edges) == 65
    assert stats.percentiles[50.0] == pytest.approx(float(x.median()), abs=0.05)
    assert "0" in str(report) and report.to_dict()["layers"][0]["name"] == "0"


def test_gaussian_layer_is_not_heavy_tailed():
    x = torch.randn(256, 64, generator=generator(0))
    stats = activation_ranges(
        nn.Sequential(nn.Linear(64, 8)).eval(), x, observers=("minmax", "percentile")
    )["0"]
    assert stats.outlier_ratio < 3 and not stats.heavy_tailed
    assert [r.observer for r in stats.ranges] == ["minmax", "percentile"]
    assert stats.range_of("minmax").clipped == 0.0


def test_digits_cnn_layers_in_execution_order(digits_model, digits_calib):
    report = activation_ranges(
        digits_model,
        digits_calib.inputs[:128],
        max_batches=1,
        where="output",
        observers=("minmax",),
    )
    assert next(x.name for x in report.layers) == "stem.0" and report.layers[-1].name == "fc"
    assert len(report.layers) == 7 and report.samples == 64 and report.where == "output"


def test_bad_input():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(InputError, match="no module named 'nope'"):
        activation_ranges(model, torch.randn(8, 4), layers=["nope"])
    with pytest.raises(InputError, match="no Linear/Conv"):
        activation_ranges(nn.Sequential(nn.ReLU()), torch.randn(8, 4))
