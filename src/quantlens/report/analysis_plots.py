"""PNG plots of the analysis results (matplotlib, Agg backend; no display needed).

- :func:`plot_sensitivity`: bar chart of each layer's drop, most sensitive first;
- :func:`plot_layer_sqnr`: per-layer output / own / weight SQNR of the quantized layers
  along the network, exact (``inf``) points marked apart, the layer where the error jumps
  marked;
- :func:`plot_activation_histograms`: one histogram per layer (log counts) with the
  clipping range each observer chooses drawn on it;
- :func:`plot_plan`: size vs drop of a mixed-precision plan and the uniform bit widths.

Each ``plot_*`` writes the Figure its ``*_figure`` twin returns (for notebooks and tests).

:func:`write_analysis_plots` writes whichever of them have data into one folder
(file names in :data:`ANALYSIS_PLOT_FILES`), for the CLI and the HTML report.

Example:
    >>> plot_sensitivity(ql.analysis.sensitivity(model, test, ql.WeightOnly(bits=2)), "sens.png")
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from quantlens.analysis.layers import LayerComparison
from quantlens.analysis.planner import MixedPrecisionPlan
from quantlens.analysis.ranges import RangeReport
from quantlens.analysis.sensitivity import SensitivityResult
from quantlens.compare.results import Analysis
from quantlens.errors import require

DPI = 110
ANALYSIS_PLOT_FILES = {
    "sensitivity": "sensitivity.png",
    "layers": "layer_sqnr.png",
    "ranges": "activation_ranges.png",
    "plan": "mixed_precision.png",
}
OBSERVER_COLORS = {
    "minmax": "tab:red",
    "percentile": "tab:green",
    "mse": "tab:blue",
    "entropy": "tab:purple",
    "meanstd": "tab:orange",
    "moving_average": "tab:brown",
}


def _plt():
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    plt = _plt()
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def sensitivity_figure(result: SensitivityResult, *, top: int = 30):
    """The sensitivity bar chart as a matplotlib Figure: one horizontal bar per layer (most
    sensitive on top, ``top`` layers at most); red bars cost more than a fifth of the whole
    model's drop."""
    plt = _plt()
    rows = result.rows[:top]
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.32 * len(rows)))
    names = [r.name for r in rows][::-1]
    drops = [r.drop for r in rows][::-1]
    ax.barh(
        names,
        drops,
        color=["tab:red" if d > 0.2 * max(result.full_drop, 1e-12) else "tab:gray" for d in drops],
    )
    mode = (
        "keeping the layer float wins back"
        if result.reverse
        else "drop with only the layer quantized"
    )
    ax.set_xlabel(f"{mode} ({result.loss_unit} of {result.metric})")
    cfg = type(result.config).__name__ if result.config is not None else ""
    ax.set_title(
        f"Per-layer sensitivity {cfg} ({result.samples} samples; all layers: "
        f"{result.full_drop:.3g})",
        fontsize=10,
    )
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def plot_sensitivity(result: SensitivityResult, path: str | os.PathLike, *, top: int = 30) -> Path:
    """Write :func:`sensitivity_figure` to ``path`` (PNG)."""
    return _save(sensitivity_figure(result, top=top), path)


def _split(values: list[float | None]) -> tuple[list[float], list[int]]:
    """``(finite values with NaN gaps, indices of the non-finite ones)``."""
    finite = [v if v is not None and math.isfinite(v) else math.nan for v in values]
    return finite, [
        i for i, v in enumerate(values) if v is not None and not math.isnan(v) and math.isinf(v)
    ]


def layer_sqnr_figure(result: LayerComparison):
    """Per-layer SQNR along the network as a matplotlib Figure: the accumulated output error,
    the layer's own (isolated) error and its weight error, for the quantized layers only
    (float layers such as the BatchNorms a weight-only method leaves alone are not
    plotted). Exact values (``inf`` dB) are drawn as hollow markers on the top edge; the
    layer where the error jumps is marked."""
    plt = _plt()
    layers = result.quantized or result.layers
    xs = list(range(len(layers)))
    fig, ax = plt.subplots(figsize=(max(6.5, 0.45 * len(layers) + 3), 4.8))
    series: list[tuple[str, str, str, list[float | None]]] = [
        ("output (accumulated)", "o-", "tab:blue", [x.out_sqnr_db for x in layers]),
        ("own (layer alone)", "s--", "tab:orange", [x.own_sqnr_db for x in layers]),
        ("weight", "^:", "tab:green", [x.weight_sqnr_db for x in layers]),
    ]
    finite = [v for *_, values in series for v in values if v is not None and math.isfinite(v)]
    top = (max(finite) if finite else 0.0) + 6.0
    bottom = min(min(finite) - 3.0, 0.0) if finite else -1.0
    exact = False
    for label, style, color, values in series:
        ys, inf_at = _split(values)
        ax.plot(xs, ys, style, color=color, label=label)
        if inf_at:
            exact = True
            ax.scatter(
                inf_at,
                [top - 1.5] * len(inf_at),
                marker=style[0],
                s=60,
                facecolors="none",
                edgecolors=color,
                zorder=3,
            )
    if exact:
        ax.axhline(top - 1.5, color="0.6", lw=0.6, ls=":")
        ax.text(-0.4, top - 1.2, "exact (inf dB)", ha="left", va="bottom", fontsize=7, color="0.35")
    jump = result.jump
    if jump is not None and jump in layers:
        i = layers.index(jump)
        ax.axvline(i, color="tab:red", alpha=0.35, lw=6)
        ax.annotate(
            "error jumps here",
            (i, top),
            textcoords="offset points",
            xytext=(6, -14),
            color="tab:red",
            fontsize=8,
        )
    ax.set_ylim(bottom, top)
    ax.set_xlim(-0.5, len(layers) - 0.5)
    ax.set_xticks(xs)
    ax.set_xticklabels([x.name for x in layers], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("SQNR vs float (dB, higher is better)")
    ax.set_title(
        f"Layer-by-layer error of the {len(layers)} quantized layers ({result.samples} samples)",
        fontsize=10,
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_layer_sqnr(result: LayerComparison, path: str | os.PathLike) -> Path:
    """Write :func:`layer_sqnr_figure` to ``path`` (PNG)."""
    return _save(layer_sqnr_figure(result), path)


def _choose(report: RangeReport, layers: list[str] | None, max_layers: int) -> list:
    if layers is not None:
        return [report[n] for n in layers]
    chosen = sorted(
        report.layers, key=lambda x: -(x.clipping_gain_db or 0.0) - 0.01 * x.outlier_ratio
    )[:max_layers]
    order = {x.name: i for i, x in enumerate(report.layers)}
    return sorted(chosen, key=lambda x: order[x.name])


def activation_figure(
    report: RangeReport, *, layers: list[str] | None = None, max_layers: int = 12
):
    """A grid of activation histograms (log counts) as a matplotlib Figure, with two vertical
    lines (low and high bound) per observer's clipping range on each.

    Args:
        report: from :func:`quantlens.analysis.activation_ranges`.
        layers: which layers (default: the most heavy-tailed first, ``max_layers`` of them).
    """
    plt = _plt()
    chosen = _choose(report, layers, max_layers)
    cols = min(3, max(1, len(chosen)))
    rows = -(-len(chosen) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.0 * rows + 0.4), squeeze=False)
    for ax, stats in zip(axes.flat, chosen):
        edges, counts = stats.hist_edges, stats.hist_counts
        if counts:
            ax.stairs(counts, edges, fill=True, color="0.65", baseline=0.5)
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.7, top=max(max(counts), 1) * 3)
        for r in stats.ranges:
            color = OBSERVER_COLORS.get(r.observer, "black")
            ax.axvline(r.lo, color=color, lw=1.2)
            ax.axvline(r.hi, color=color, lw=1.2, label=f"{r.observer} {r.sqnr_db:.1f} dB")
        ax.set_title(f"{stats.name[-40:]} (tail {stats.outlier_ratio:.1f}x)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    fig.suptitle(
        f"Activation {report.where}s and each observer's {report.bits}-bit clipping range "
        "(SQNR of the activations quantized with it)",
        fontsize=10,
    )
    return fig


def plot_activation_histograms(
    report: RangeReport,
    path: str | os.PathLike,
    *,
    layers: list[str] | None = None,
    max_layers: int = 12,
) -> Path:
    """Write :func:`activation_figure` to ``path`` (PNG)."""
    return _save(activation_figure(report, layers=layers, max_layers=max_layers), path)


def plan_figure(plan: MixedPrecisionPlan):
    """Size vs measured drop as a matplotlib Figure: the plan and every uniform bit width
    measured with it (a symmetric-log drop axis when one point is far above the rest)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    sizes = [u.size_bytes for u in plan.uniform] + [plan.size_bytes]
    scale, unit = (1e6, "MB") if max(sizes) >= 1e6 else (1e3, "KB")
    for u in plan.uniform:
        label = "float" if u.bits is None else f"uniform {u.bits}-bit"
        ax.scatter(u.size_bytes / scale, u.drop, color="tab:gray")
        ax.annotate(
            f"{label}\n{u.drop:.3g}",
            (u.size_bytes / scale, u.drop),
            textcoords="offset points",
            xytext=(5, 3),
            fontsize=8,
        )
    ax.scatter(
        plan.size_bytes / scale,
        plan.measured_drop,
        color="tab:red",
        marker="*",
        s=180,
        zorder=3,
        label=f"mixed plan ({plan.size_bytes / scale:.4g} {unit}, drop {plan.measured_drop:.3g})",
    )
    limit = plan.budget.get("max_drop", plan.budget.get("max_ppl_increase"))
    if limit is not None:
        ax.axhline(limit, color="tab:red", ls="--", alpha=0.5, label="drop budget")
    if "target_size" in plan.budget:
        ax.axvline(
            plan.budget["target_size"] / scale,
            color="tab:red",
            ls="--",
            alpha=0.5,
            label="size budget",
        )
    drops = sorted(abs(d) for d in [u.drop for u in plan.uniform] + [plan.measured_drop])
    near = max(drops[len(drops) // 2], limit or 0.0, 0.1)
    lowest = min([u.drop for u in plan.uniform] + [plan.measured_drop])
    if drops[-1] > 20 * near:  # one far point (2 bits everywhere) would flatten the rest
        ax.set_yscale("symlog", linthresh=near)
        ax.set_ylim(min(lowest, 0.0) - 0.1 * near, drops[-1] * 4)
    else:
        ax.set_ylim(min(lowest, 0.0) - 0.05 * drops[-1] - 1e-3, drops[-1] * 1.25 + 1e-3)
    ax.set_xlabel(f"model size ({unit} in memory)")
    ax.set_ylabel(f"measured drop ({plan.loss_unit} of {plan.metric})")
    ax.set_title("Mixed-precision plan vs uniform bit widths", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_plan(plan: MixedPrecisionPlan, path: str | os.PathLike) -> Path:
    """Write :func:`plan_figure` to ``path`` (PNG)."""
    return _save(plan_figure(plan), path)


def write_analysis_plots(
    directory: str | os.PathLike,
    *,
    sensitivity: SensitivityResult | None = None,
    layers: LayerComparison | None = None,
    ranges: RangeReport | None = None,
    plan: MixedPrecisionPlan | None = None,
) -> list[Path]:
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


def write_analysis(analysis: Analysis, directory: Path) -> list[Path]:
    """:func:`write_analysis_plots` of a comparison's :class:`~quantlens.compare.Analysis`.

    Args:
        analysis: the analysis of one row; directory: where the PNGs go.

    Returns:
        The paths written.
    """
    return write_analysis_plots(
        directory, sensitivity=analysis.sensitivity, layers=analysis.layers, ranges=analysis.ranges
    )
