"""PNG plots of the analysis results (matplotlib, Agg backend; no display needed).

- :func:`plot_sensitivity`: bar chart of each layer's drop, most sensitive first;
- :func:`plot_layer_sqnr`: per-layer output / weight / own SQNR along the network, with
  the layer where the error jumps marked;
- :func:`plot_activation_histograms`: one histogram per layer (log counts) with the
  clipping range each observer chooses drawn on it;
- :func:`plot_plan`: size vs drop of a mixed-precision plan and the uniform bit widths.

:func:`write_analysis_plots` writes whichever of them have data into one folder
(file names in :data:`ANALYSIS_PLOT_FILES`), for the CLI and the HTML report.

Example:
    >>> plot_sensitivity(ql.analysis.sensitivity(model, test, ql.WeightOnly(bits=2)), "sens.png")
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

from quantlens.analysis.layers import LayerComparison
from quantlens.analysis.planner import MixedPrecisionPlan
from quantlens.analysis.ranges import RangeReport
from quantlens.analysis.sensitivity import SensitivityResult
from quantlens.errors import require

DPI = 110
SQNR_CAP_DB = 100.0
ANALYSIS_PLOT_FILES = {
    "sensitivity": "sensitivity.png",
    "layers": "layer_sqnr.png",
    "ranges": "activation_ranges.png",
    "plan": "mixed_precision.png",
}
OBSERVER_COLORS = {"minmax": "tab:red", "percentile": "tab:green", "mse": "tab:blue", "entropy": "tab:purple",
                   "meanstd": "tab:orange", "moving_average": "tab:brown"}


def _plt():
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, plt) -> Path:
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _cap(value: float | None) -> float:
    if value is None or math.isnan(value):
        return math.nan
    return max(min(value, SQNR_CAP_DB), -SQNR_CAP_DB)


def plot_sensitivity(result: SensitivityResult, path: str | os.PathLike, *, top: int = 30) -> Path:
    """Horizontal bars: each layer's drop (most sensitive on top), ``top`` layers at most."""
    plt = _plt()
    rows = result.rows[:top]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * len(rows)))
    names = [r.name for r in rows][::-1]
    drops = [r.drop for r in rows][::-1]
    ax.barh(names, drops, color=["tab:red" if d > 0.2 * max(result.full_drop, 1e-12) else "tab:gray" for d in drops])
    mode = "keeping the layer float wins back" if result.reverse else "drop with only the layer quantized"
    ax.set_xlabel(f"{mode} ({result.loss_unit} of {result.metric})")
    cfg = type(result.config).__name__ if result.config is not None else ""
    ax.set_title(f"Per-layer sensitivity {cfg} ({result.samples} samples; all layers: {result.full_drop:.3g})")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path, plt)


def plot_layer_sqnr(result: LayerComparison, path: str | os.PathLike) -> Path:
    """Per-layer SQNR lines (output, own noise, weight) in execution order; the jump marked."""
    plt = _plt()
    layers = result.layers
    xs = list(range(len(layers)))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(layers) + 3), 4.5))
    ax.plot(xs, [_cap(x.out_sqnr_db) for x in layers], "o-", label="output SQNR")
    ax.plot(xs, [_cap(x.own_sqnr_db) for x in layers], "s--", label="own noise SQNR", alpha=0.8)
    ax.plot(xs, [_cap(x.weight_sqnr_db) for x in layers], "^:", label="weight SQNR", alpha=0.8)
    jump = result.jump
    if jump is not None:
        i = layers.index(jump)
        ax.axvline(i, color="tab:red", alpha=0.4)
        ax.annotate("error jumps", (i, _cap(jump.out_sqnr_db)), textcoords="offset points", xytext=(5, -15),
                    color="tab:red")
    ax.set_xticks(xs)
    ax.set_xticklabels([x.name for x in layers], rotation=75, ha="right", fontsize=7)
    ax.set_ylabel(f"SQNR vs float (dB, capped at {SQNR_CAP_DB:.0f})")
    ax.set_title(f"Layer-by-layer error ({result.samples} samples)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, plt)


def plot_activation_histograms(report: RangeReport, path: str | os.PathLike, *, layers: list[str] | None = None,
                               max_layers: int = 12) -> Path:
    """A grid of activation histograms (log counts) with each observer's clipping range.

    Args:
        report: from :func:`quantlens.analysis.activation_ranges`.
        layers: which layers (default: the most heavy-tailed first, ``max_layers`` of them).
    """
    plt = _plt()
    if layers is None:
        chosen = sorted(report.layers, key=lambda x: -(x.clipping_gain_db or 0.0) - 0.01 * x.outlier_ratio)[:max_layers]
        order = {x.name: i for i, x in enumerate(report.layers)}
        chosen.sort(key=lambda x: order[x.name])
    else:
        chosen = [report[n] for n in layers]
    cols = min(3, max(1, len(chosen)))
    rows = -(-len(chosen) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, stats in zip(axes.flat, chosen):
        edges, counts = stats.hist_edges, stats.hist_counts
        if counts:
            widths = [b - a for a, b in itertools.pairwise(edges)]
            ax.bar(edges[:-1], [max(c, 0.5) for c in counts], width=widths, align="edge", color="0.6")
            ax.set_yscale("log")
        for r in stats.ranges:
            color = OBSERVER_COLORS.get(r.observer, "black")
            ax.axvline(r.lo, color=color, lw=1)
            ax.axvline(r.hi, color=color, lw=1, label=f"{r.observer} {r.sqnr_db:.1f} dB")
        ax.set_title(f"{stats.name[-40:]} (tail {stats.outlier_ratio:.1f}x)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(chosen):]:
        ax.axis("off")
    fig.suptitle(f"Activation {report.where}s and each observer's {report.bits}-bit clipping range", fontsize=10)
    return _save(fig, path, plt)


def plot_plan(plan: MixedPrecisionPlan, path: str | os.PathLike) -> Path:
    """Size vs measured drop: the plan and every uniform bit width measured with it."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for u in plan.uniform:
        label = "float" if u.bits is None else f"uniform {u.bits}-bit"
        ax.scatter(u.size_bytes / 1e6, u.drop, color="tab:gray")
        ax.annotate(label, (u.size_bytes / 1e6, u.drop), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.scatter(plan.size_bytes / 1e6, plan.measured_drop, color="tab:red", marker="*", s=160, label="mixed plan")
    if "max_drop" in plan.budget:
        ax.axhline(plan.budget["max_drop"], color="tab:red", ls="--", alpha=0.5, label="budget")
    if "target_size" in plan.budget:
        ax.axvline(plan.budget["target_size"] / 1e6, color="tab:red", ls="--", alpha=0.5, label="size budget")
    ax.set_xlabel("model size (MB in memory)")
    ax.set_ylabel(f"measured drop ({plan.loss_unit} of {plan.metric})")
    ax.set_title("Mixed-precision plan vs uniform bit widths")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, plt)


def write_analysis_plots(directory: str | os.PathLike, *, sensitivity: SensitivityResult | None = None,
                         layers: LayerComparison | None = None, ranges: RangeReport | None = None,
                         plan: MixedPrecisionPlan | None = None) -> list[Path]:
    """Write the plots of whichever results are given into ``directory``; returns the paths.

    File names are :data:`ANALYSIS_PLOT_FILES` (``sensitivity.png``, ``layer_sqnr.png``,
    ``activation_ranges.png``, ``mixed_precision.png``).
    """
    directory = Path(directory)
    out = []
    if sensitivity is not None and sensitivity.rows:
        out.append(plot_sensitivity(sensitivity, directory / ANALYSIS_PLOT_FILES["sensitivity"]))
    if layers is not None and layers.layers:
        out.append(plot_layer_sqnr(layers, directory / ANALYSIS_PLOT_FILES["layers"]))
    if ranges is not None and ranges.layers:
        out.append(plot_activation_histograms(ranges, directory / ANALYSIS_PLOT_FILES["ranges"]))
    if plan is not None:
        out.append(plot_plan(plan, directory / ANALYSIS_PLOT_FILES["plan"]))
    return out
