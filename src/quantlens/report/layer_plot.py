"""``layer_error.png``: the per-layer output SQNR of the recommended method (else the first
row with per-layer errors); an infinite SQNR is a hatched bar to the right edge.

Example:
    >>> plot_layer_error(comparison, Path("layer_error.png"))
"""

from __future__ import annotations

import math
from pathlib import Path

from quantlens.compare.results import Comparison
from quantlens.report import figure
from quantlens.report.figure import DPI, legend_outside, pyplot


def layer_error_row(report: Comparison) -> str | None:
    """The row whose per-layer error is plotted: the recommended one (the PyTorch row of a
    recommended ONNX Runtime row), else the first with data."""
    best = report.recommended
    if best is not None and report.layer_errors.get(best.source_name):
        return best.source_name
    return next((name for name, layers in report.layer_errors.items() if layers), None)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def plot_layer_error(report: Comparison, path: Path) -> Path | None:
    """Per-layer SQNR bars; an infinite SQNR (the layer's output is exact: it adds no error)
    is a hatched bar to the right edge labelled so, a missing one says "not measured"."""
    name = layer_error_row(report)
    if name is None:
        return None
    plt = pyplot()
    layers = report.layer_errors[name]
    series = (
        ("out_sqnr_db", "output SQNR (accumulated)", "#1f77b4", -0.2),
        ("own_sqnr_db", "own SQNR (added by this layer)", "#ff7f0e", 0.2),
    )
    finite = [getattr(x, key) for x in layers for key, *_ in series if _finite(getattr(x, key))]
    edge = max(max(finite, default=0.0) * 1.25, 10.0)
    fig, ax = plt.subplots(figsize=(8.6, max(3.2, 0.36 * len(layers) + 1.8)), dpi=DPI)
    ys = list(range(len(layers)))
    for key, label, color, shift in series:
        vals = [getattr(x, key) for x in layers]
        ax.barh(
            [y + shift for y, v in zip(ys, vals) if _finite(v)],
            [v for v in vals if _finite(v)],
            0.4,
            color=color,
            label=label,
        )
        inf_ys = [
            y + shift for y, v in zip(ys, vals) if isinstance(v, float) and math.isinf(v) and v > 0
        ]
        if inf_ys:
            ax.barh(
                inf_ys,
                [edge] * len(inf_ys),
                0.4,
                color="white",
                edgecolor=color,
                hatch="///",
                linewidth=0.8,
                label=f"{label.split(' (')[0]}: ∞, exact (no added error)",
            )
            for y in inf_ys:
                ax.annotate(
                    "∞ exact",
                    (edge, y),
                    textcoords="offset points",
                    xytext=(-4, 0),
                    ha="right",
                    va="center",
                    fontsize=7,
                    color="#333333",
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none"},
                )
        for y, v in zip(ys, vals):
            if not _finite(v) and not (isinstance(v, float) and math.isinf(v) and v > 0):
                ax.annotate(
                    "not measured",
                    (0, y + shift),
                    textcoords="offset points",
                    xytext=(3, 0),
                    va="center",
                    fontsize=7,
                    color="#777777",
                )
    for y, x in zip(ys, layers):
        if x.jump:
            own = x.own_sqnr_db
            at = own if _finite(own) else edge
            ax.annotate(
                "← error jumps here",
                (at, y + 0.2),
                textcoords="offset points",
                xytext=(4, 0),
                va="center",
                fontsize=8,
                color="#d62728",
                fontweight="bold",
            )
    ax.set_yticks(ys, [f"{x.name} ({x.kind})" for x in layers], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, edge * (1.18 if any(x.jump for x in layers) else 1.02))
    ax.set_xlabel("SQNR vs float (dB, higher is better)")
    best = report.recommended
    ax.set_title(
        f"Per-layer quantization error: {name}"
        + (" (recommended)" if best and best.source_name == name else "")
    )
    ax.grid(True, axis="x", alpha=0.3)
    legend_outside(ax)
    return figure.save(fig, path, plt)


__all__ = ["layer_error_row", "plot_layer_error"]
