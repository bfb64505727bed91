"""The bar plots: ``latency.png`` (median latency with p95 whiskers) and ``size.png``
(checkpoint and in-memory weight bytes). Bars of rows measured in ONNX Runtime are hatched.

Example:
    >>> plot_latency(comparison, Path("latency.png"))
"""

from __future__ import annotations

from pathlib import Path

from quantlens.compare.recommend import size_change
from quantlens.compare.results import Comparison
from quantlens.report import figure
from quantlens.report.figure import DPI, legend_outside, pyplot
from quantlens.report.plot_style import Labels, hatch_runtime_bars, size_scale, styles


class _Bars:
    """A bar plot whose bars lie horizontally (names down the left: long or numbered names,
    the figure as wide as the scatter plots and as tall as the rows need) or stand up;
    every call takes ``(position, value)`` and draws along the right axis."""

    def __init__(self, plt, labels: Labels, n: int, row_height: float):
        self.horizontal = labels.numbered
        size = (labels.width(), max(3.2, row_height * n + 1.6)) if self.horizontal else (8.6, 4.6)
        self.fig, self.ax = plt.subplots(figsize=size, dpi=DPI)

    def bars(self, pos, values, width: float = 0.8, **kwargs):
        """The bars (matplotlib's ``BarContainer``)."""
        return (self.ax.barh if self.horizontal else self.ax.bar)(pos, values, width, **kwargs)

    def whiskers(self, pos, values, upper, **kwargs) -> None:
        """Error bars from each value up to ``value + upper``."""
        err = [[0] * len(values), upper]
        if self.horizontal:
            self.ax.errorbar(values, pos, xerr=err, **kwargs)
        else:
            self.ax.errorbar(pos, values, yerr=err, **kwargs)

    def note(self, text: str, pos: float, value: float, offset: float) -> None:
        """``text`` ``offset`` points past the end of a bar."""
        if self.horizontal:
            self.ax.annotate(
                text,
                (value, pos),
                textcoords="offset points",
                xytext=(offset, 0),
                va="center",
                fontsize=8,
            )
        else:
            self.ax.annotate(
                text,
                (pos, value),
                textcoords="offset points",
                xytext=(0, offset),
                ha="center",
                fontsize=8,
            )

    def axes(self, pos, names: list[str], label: str, margin: float) -> None:
        """Category ticks, the value axis' label, its margin and grid (horizontal: first row
        on top)."""
        ax = self.ax
        if self.horizontal:
            ax.set_yticks(pos, names, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel(label)
            ax.margins(x=margin)
        else:
            ax.set_xticks(pos, names)
            ax.set_ylabel(label)
            ax.margins(y=margin)
        ax.grid(True, axis="x" if self.horizontal else "y", alpha=0.3)


def plot_latency(report: Comparison, path: Path) -> Path | None:
    rows = [r for r in report.rows if r.ok and r.latency_ms is not None]
    if not rows:
        return None
    plt = pyplot()
    style = styles(report.rows)
    labels = Labels.of(report)
    pos = list(range(len(rows)))
    med = [r.latency_ms for r in rows if r.latency_ms is not None]  # every row: see above
    upper = [max((r.latency_p95_ms or m) - m, 0) for r, m in zip(rows, med)]
    threads = next((r.threads for r in rows if r.threads), None)
    batch = next((r.batch_size for r in rows if r.batch_size), None)
    plot = _Bars(plt, labels, len(rows), row_height=0.34)
    bars = plot.bars(pos, med, color=[style[r.name][0] for r in rows], label="median")
    hatch_runtime_bars(bars, rows)
    plot.whiskers(
        pos,
        med,
        upper,
        fmt="none",
        ecolor="black",
        capsize=3 if plot.horizontal else 5,
        label="p95",
    )
    for p, v, up in zip(pos, med, upper):
        plot.note(f"{v:.2f} ms", p, v + up, offset=4)
    plot.axes(
        pos,
        labels.bar_names(rows),
        "latency per batch (ms)",
        margin=0.15 if plot.horizontal else 0.12,
    )
    plot.ax.set_title(
        f"Latency: median bar, p95 whisker (batch {batch}, {threads} thread(s); lower is better)",
        fontsize=11,
    )
    legend_outside(plot.ax)
    return figure.save(plot.fig, path, plt)


def plot_size(report: Comparison, path: Path) -> Path | None:
    rows = [r for r in report.rows if r.ok and (r.disk_bytes or r.memory_bytes)]
    if not rows:
        return None
    plt = pyplot()
    scale, unit = size_scale(rows)
    labels = Labels.of(report)
    pos = list(range(len(rows)))
    width = 0.4
    disk = [(r.disk_bytes or 0) / scale for r in rows]
    mem = [(r.memory_bytes or 0) / scale for r in rows]
    base = report.baseline
    changes = [
        size_change(base.disk_bytes, r.disk_bytes)
        if base and base.disk_bytes and r.disk_bytes and r is not base
        else ""
        for r in rows
    ]
    plot = _Bars(plt, labels, len(rows), row_height=0.42)
    disk_bars = plot.bars(
        [p - width / 2 for p in pos], disk, width, label="checkpoint on disk", color="#1f77b4"
    )
    hatch_runtime_bars(disk_bars, rows)  # an exported file's bytes
    plot.bars(
        [p + width / 2 for p in pos],
        mem,
        width,
        label="weights + buffers in memory",
        color="#ff7f0e",
    )
    for p, d, m, text in zip(pos, disk, mem, changes):
        if plot.horizontal:  # beside the disk bar
            plot.note(text, p - width / 2, d, offset=4)
        else:  # above the pair
            plot.note(text, p, max(d, m), offset=3)
    plot.axes(
        pos, labels.bar_names(rows), f"size ({unit})", margin=0.22 if plot.horizontal else 0.1
    )
    plot.ax.set_title("Model size (lower is better)")
    legend_outside(plot.ax)
    return figure.save(plot.fig, path, plt)


__all__ = ["plot_latency", "plot_size"]
