"""The report's PNG plots (matplotlib, Agg backend: no display needed).

- ``accuracy_vs_size.png``: quality vs checkpoint size;
- ``accuracy_vs_latency.png``: quality vs median latency, Pareto front marked;
- ``latency.png``: median latency bars with p95 whiskers;
- ``size.png``: checkpoint and in-memory weight size bars;
- ``layer_error.png``: per-layer output SQNR of the recommended method.

Every plot has a title, axis units and a legend; float is a black square, the recommended
method a star.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from quantlens.errors import require
from quantlens.eval.compare import Row
from quantlens.report import tables

if TYPE_CHECKING:
    from quantlens.report.report import Report

DPI = 110
PLOT_FILES = ("accuracy_vs_size.png", "accuracy_vs_latency.png", "latency.png", "size.png", "layer_error.png")


def _plt():
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points ``(cost, quality, name)`` no other point beats on both (lower cost, higher
    quality), sorted by cost.

    Example:
        >>> [p[2] for p in pareto_front([(1, 90, "a"), (2, 95, "b"), (3, 94, "c")])]
        ['a', 'b']
    """
    front = []
    for cost, qual, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or qual > front[-1][1]:
            front.append((cost, qual, name))
    return front


def _colors(rows: list[Row]) -> dict[str, str]:
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
               "#bcbd22", "#7f7f7f"]
    out, i = {}, 0
    for r in rows:
        if r.method == "float":
            out[r.name] = "#000000"
        else:
            out[r.name] = palette[i % len(palette)]
            i += 1
    return out


def _scatter(ax, rows, x_of, report: Report, colors) -> list[tuple[float, float, str]]:
    best = report.recommended
    points = []
    for r in rows:
        x, y = x_of(r), tables.quality(r)
        if x is None or y is None:
            continue
        points.append((x, y, r.name))
        is_float, is_best = r.method == "float", best is not None and r.name == best.name
        marker, size = ("s", 90) if is_float else (("*", 320) if is_best else ("o", 80))
        label = r.name + (" (float)" if is_float else "") + (" (recommended)" if is_best else "")
        ax.scatter([x], [y], s=size, marker=marker, color=colors[r.name], label=label, zorder=3,
                   edgecolors="black" if is_best else "none", linewidths=0.8)
        ax.annotate(r.name, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=8)
    ax.margins(x=0.12, y=0.12)
    return points


def _quality_axis(ax, rows, report: Report) -> None:
    label = tables.quality_label(rows)
    ax.set_ylabel(label)
    base = report.baseline
    bq = tables.quality(base) if base else None
    if bq is not None and "%" in label:
        ax.axhline(bq - report.max_accuracy_drop, color="#999999", linestyle="--", linewidth=1,
                   label=f"float − {report.max_accuracy_drop:g} pt budget")
    ax.grid(True, alpha=0.3)


def _legend(ax) -> None:
    ax.legend(fontsize=8, loc="best", framealpha=0.85)


def plot_accuracy_vs_size(report: Report, path: Path) -> Path:
    plt = _plt()
    rows = [r for r in report.rows if r.ok]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _scatter(ax, rows, lambda r: (r.disk_bytes or r.memory_bytes or 0) / 1e6 or None, report, _colors(report.rows))
    _quality_axis(ax, rows, report)
    ax.set_xlabel("checkpoint size on disk (MB)")
    ax.set_title("Accuracy vs size (up and left is better)")
    _legend(ax)
    return _save(fig, path, plt)


def plot_accuracy_vs_latency(report: Report, path: Path) -> Path:
    plt = _plt()
    rows = [r for r in report.rows if r.ok]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = _scatter(ax, rows, lambda r: r.latency_ms, report, _colors(report.rows))
    front = pareto_front(points)
    if len(front) >= 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="#2ca02c", alpha=0.6,
                linewidth=2, label="Pareto front", zorder=2)
    _quality_axis(ax, rows, report)
    batch = next((r.batch_size for r in rows if r.batch_size), None)
    ax.set_xlabel(f"median latency per batch of {batch} (ms)" if batch else "median latency (ms)")
    ax.set_title("Accuracy vs latency (up and left is better)")
    _legend(ax)
    return _save(fig, path, plt)


def plot_latency(report: Report, path: Path) -> Path:
    plt = _plt()
    rows = [r for r in report.rows if r.ok and r.latency_ms is not None]
    colors = _colors(report.rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = [r.name for r in rows]
    med = [r.latency_ms for r in rows]
    upper = [max((r.latency_p95_ms or r.latency_ms) - r.latency_ms, 0) for r in rows]
    ax.bar(names, med, color=[colors[n] for n in names], label="median")
    ax.errorbar(names, med, yerr=[[0] * len(med), upper], fmt="none", ecolor="black", capsize=5, label="p95")
    for i, (v, up) in enumerate(zip(med, upper)):
        ax.annotate(f"{v:.2f} ms", (i, v + up), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
    ax.margins(y=0.12)
    threads = next((r.threads for r in rows if r.threads), None)
    batch = next((r.batch_size for r in rows if r.batch_size), None)
    ax.set_ylabel("latency per batch (ms)")
    ax.set_title(f"Latency: median with p95 whisker (batch {batch}, {threads} thread(s); lower is better)")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax)
    fig.autofmt_xdate(rotation=20)
    return _save(fig, path, plt)


def plot_size(report: Report, path: Path) -> Path:
    plt = _plt()
    rows = [r for r in report.rows if r.ok]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = list(range(len(rows)))
    width = 0.4
    disk = [(r.disk_bytes or 0) / 1e6 for r in rows]
    mem = [(r.memory_bytes or 0) / 1e6 for r in rows]
    ax.bar([x - width / 2 for x in xs], disk, width, label="checkpoint on disk", color="#1f77b4")
    ax.bar([x + width / 2 for x in xs], mem, width, label="weights + buffers in memory", color="#ff7f0e")
    base = report.baseline
    for x, r, d in zip(xs, rows, disk):
        if base and base.disk_bytes and r.disk_bytes and r is not base:
            ax.annotate(tables.size_change(base.disk_bytes, r.disk_bytes), (x - width / 2, d),
                        textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(xs, [r.name for r in rows])
    ax.set_ylabel("size (MB)")
    ax.set_title("Model size (lower is better)")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax)
    fig.autofmt_xdate(rotation=20)
    return _save(fig, path, plt)


def layer_error_row(report: Report) -> str | None:
    """The row whose per-layer error is plotted: the recommended one, else the first with data."""
    best = report.recommended
    if best is not None and report.layer_errors.get(best.name):
        return best.name
    return next((name for name, layers in report.layer_errors.items() if layers), None)


def plot_layer_error(report: Report, path: Path) -> Path | None:
    name = layer_error_row(report)
    if name is None:
        return None
    plt = _plt()
    layers = report.layer_errors[name]
    cap = 80.0

    def clip(v):
        return cap if v is None or math.isinf(v) else min(v, cap)

    labels = [f"{x['name']} ({x['kind']})" for x in layers]
    out = [clip(x["out_sqnr_db"]) for x in layers]
    own = [clip(x["own_sqnr_db"]) for x in layers]
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.32 * len(layers) + 1.6)))
    ys = list(range(len(layers)))
    ax.barh([y - 0.2 for y in ys], out, 0.4, label="output SQNR (accumulated)", color="#1f77b4")
    ax.barh([y + 0.2 for y in ys], own, 0.4, label="own SQNR (added by this layer)", color="#ff7f0e")
    for y, x in zip(ys, layers):
        if x.get("jump"):
            ax.annotate("← error jumps here", (own[y], y + 0.2), textcoords="offset points", xytext=(4, -3),
                        fontsize=8, color="#d62728")
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"SQNR vs float (dB, higher is better; capped at {cap:.0f})")
    ax.set_title(f"Per-layer quantization error: {name}")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_xlim(0, cap * 1.08 if max(out + own, default=0) >= cap else max(out + own, default=1) * 1.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14 - 0.6 / max(len(layers), 1)), ncol=2,
              frameon=False)
    return _save(fig, path, plt)


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def write_plots(report: Report, directory: Path) -> list[Path]:
    """Write every plot that has data into ``directory``; returns the paths written."""
    makers = (plot_accuracy_vs_size, plot_accuracy_vs_latency, plot_latency, plot_size, plot_layer_error)
    out = []
    for maker, filename in zip(makers, PLOT_FILES):
        written = maker(report, directory / filename)
        if written is not None:
            out.append(written)
    return out
