"""The report's PNG plots (matplotlib, Agg backend: no display needed).

- ``accuracy_vs_size.png``: quality vs checkpoint size;
- ``accuracy_vs_latency.png``: quality vs median latency, Pareto front marked;
- ``latency.png``: median latency bars with p95 whiskers;
- ``size.png``: checkpoint and in-memory weight size bars;
- ``layer_error.png``: per-layer output SQNR of the recommended method.

Every method keeps one colour and one marker across the plots (float: a black square);
the recommended one is outlined and named in bold. Point labels are placed so that they do
not overlap (:mod:`quantlens.report.label_layout`); points that coincide share one label;
with long names (a sweep) or many rows the points are numbered and the legend names them.
The legends sit outside the axes, so they never hide a point. A plot without data is not
written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from quantlens.errors import require
from quantlens.eval.compare import Row
from quantlens.report import tables
from quantlens.report.label_layout import place_labels

if TYPE_CHECKING:
    from quantlens.report.report import Report

DPI = 110
PLOT_FILES = (
    "accuracy_vs_size.png",
    "accuracy_vs_latency.png",
    "latency.png",
    "size.png",
    "layer_error.png",
)
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
    "#ad494a",
    "#637939",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
)
MARKERS = ("o", "^", "D", "v", "P", "X", "h", "<", ">", "p", "d", "8")
PARETO_COLOR = "#555555"
NUMBERED_NAME_LENGTH = 12  # longer names (or more rows than MAX_NAMED) are numbered
MAX_NAMED = 8


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


def styles(rows: list[Row]) -> dict[str, tuple[str, str]]:
    """``{row name: (colour, marker)}``: float a black square, every other row its own
    colour and marker, the same in every plot."""
    out, i = {}, 0
    for r in rows:
        if r.method == "float":
            out[r.name] = ("#000000", "s")
        else:
            out[r.name] = (PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)])
            i += 1
    return out


def numbered(rows: list[Row]) -> bool:
    """Whether the plots label points with numbers (long names or many rows)."""
    return len(rows) > MAX_NAMED or any(len(r.name) > NUMBERED_NAME_LENGTH for r in rows)


@dataclass(frozen=True)
class _Labels:
    """How every plot of a report names its measured rows (computed once per plot with
    :meth:`of`): ``tags`` maps a row name to its point label, the name itself or, when
    ``numbered`` (:func:`numbered`), its number."""

    tags: dict[str, str]
    numbered: bool

    @classmethod
    def of(cls, report: Report) -> _Labels:
        ok = [r for r in report.rows if r.ok]
        use_numbers = numbered(ok)
        return cls(
            {r.name: str(i) if use_numbers else r.name for i, r in enumerate(ok, 1)}, use_numbers
        )

    def legend(self, r: Row, best: Row | None) -> str:
        name = f"{self.tags[r.name]}  {r.name}" if self.numbered else r.name
        return name + (" (recommended)" if best is not None and r.name == best.name else "")

    def bar_names(self, rows: list[Row]) -> list[str]:
        """Category labels of the bar plots, with the scatter plots' numbers when numbered
        (the bars then lie horizontally)."""
        return [f"{r.name}  {self.tags[r.name]}" if self.numbered else r.name for r in rows]

    def width(self, base: float = 8.6) -> float:
        """Figure width (inches) that leaves the axes about 6 inches next to the legend."""
        longest = max((len(name) + (4 if self.numbered else 0) for name in self.tags), default=0)
        return max(base, min(6.6 + 0.075 * (longest + 16), 13.0))


def _legend_outside(ax, **kwargs) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0,
            frameon=False,
            **kwargs,
        )


def _size_scale(rows: list[Row]) -> tuple[float, str]:
    biggest = max(((r.disk_bytes or r.memory_bytes or 0) for r in rows), default=0)
    return (1e3, "kB") if biggest < 1e6 else (1e6, "MB") if biggest < 1e9 else (1e9, "GB")


def _groups(
    ax, items: list[tuple[float, float, Row]], px: float = 5.0
) -> list[list[tuple[float, float, Row]]]:
    """Points closer than ``px`` pixels on screen, grouped (they share one label)."""
    groups: list[list] = []
    for item in items:
        x, y = ax.transData.transform((item[0], item[1]))
        for g in groups:
            gx, gy = ax.transData.transform((g[0][0], g[0][1]))
            if abs(gx - x) < px and abs(gy - y) < px:
                g.append(item)
                break
        else:
            groups.append([item])
    return groups


def _scatter(
    fig, ax, rows: list[Row], x_of, report: Report, labels: _Labels, *, pareto: bool
) -> None:
    """Quality against ``x_of(row)``: markers, budget line, Pareto rings, legend, labels."""
    best = report.recommended
    style, tags = styles(report.rows), labels.tags
    items = [(x_of(r), tables.quality(r), r) for r in rows]
    items = [(x, y, r) for x, y, r in items if x is not None and y is not None]
    if pareto:
        front = pareto_front([(x, y, r.name) for x, y, r in items])
        if len(front) >= 2:
            ax.step(
                [p[0] for p in front],
                [p[1] for p in front],
                where="post",
                color=PARETO_COLOR,
                linestyle="--",
                linewidth=1.2,
                zorder=2,
            )
        ax.scatter(
            [p[0] for p in front],
            [p[1] for p in front],
            s=330,
            facecolors="none",
            edgecolors=PARETO_COLOR,
            linewidths=1.3,
            zorder=2,
            label="Pareto front"
            if len(front) >= 2
            else "Pareto front (this point alone)"
            if front
            else None,
        )
    for x, y, r in items:
        color, marker = style[r.name]
        is_best = best is not None and r.name == best.name
        ax.scatter(
            [x],
            [y],
            s=150 if is_best else 75,
            marker=marker,
            color=color,
            zorder=3,
            edgecolors="black" if is_best else "white",
            linewidths=1.6 if is_best else 0.6,
            label=labels.legend(r, best),
        )
    _quality_axis(ax, rows, report)
    ax.margins(x=0.14, y=0.16)
    ax.grid(True, alpha=0.3)
    _legend_outside(ax)
    fig.tight_layout()
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    groups = _groups(ax, items)
    for g in groups:  # coinciding points: the ones underneath get a larger outline of their marker
        for k, (x, y, r) in enumerate(g[:-1]):
            color, marker = style[r.name]
            ax.scatter(
                [x],
                [y],
                s=190 + 120 * (len(g) - 2 - k),
                marker=marker,
                facecolors="none",
                edgecolors=color,
                linewidths=1.6,
                zorder=4,
            )
    place_labels(
        ax,
        [(g[0][0], g[0][1]) for g in groups],
        [" = ".join(tags[r.name] for _, _, r in g) for g in groups],
        bold=[any(best is not None and r.name == best.name for _, _, r in g) for g in groups],
    )


def _quality_axis(ax, rows, report: Report) -> None:
    label, _ = tables.quality_names(rows, report.task)
    ax.set_ylabel(label)
    base = report.baseline
    bq = tables.quality(base) if base else None
    if bq is not None and "%" in label:
        ax.axhline(
            bq - report.max_accuracy_drop,
            color="#999999",
            linestyle=":",
            linewidth=1.2,
            label=f"budget: float − {report.max_accuracy_drop:g} point(s)",
            zorder=1,
        )


def plot_accuracy_vs_size(report: Report, path: Path) -> Path | None:
    rows = [
        r
        for r in report.rows
        if r.ok and (r.disk_bytes or r.memory_bytes) and tables.quality(r) is not None
    ]
    if not rows:
        return None
    plt = _plt()
    scale, unit = _size_scale(rows)
    labels = _Labels.of(report)
    fig, ax = plt.subplots(figsize=(labels.width(), 4.8), dpi=DPI)
    ax.set_xlabel(f"checkpoint size on disk ({unit})")
    ax.set_title("Accuracy vs size (up and left is better)")
    _scatter(
        fig,
        ax,
        rows,
        lambda r: (r.disk_bytes or r.memory_bytes) / scale,
        report,
        labels,
        pareto=False,
    )
    return _save(fig, path, plt, layout=False)


def plot_accuracy_vs_latency(report: Report, path: Path) -> Path | None:
    rows = [
        r
        for r in report.rows
        if r.ok and r.latency_ms is not None and tables.quality(r) is not None
    ]
    if not rows:
        return None
    plt = _plt()
    labels = _Labels.of(report)
    fig, ax = plt.subplots(figsize=(labels.width(), 4.8), dpi=DPI)
    batch = next((r.batch_size for r in rows if r.batch_size), None)
    ax.set_xlabel(f"median latency per batch of {batch} (ms)" if batch else "median latency (ms)")
    ax.set_title("Accuracy vs latency (up and left is better)")
    _scatter(fig, ax, rows, lambda r: r.latency_ms, report, labels, pareto=True)
    return _save(fig, path, plt, layout=False)


class _Bars:
    """A bar plot whose bars lie horizontally (names down the left: long or numbered names,
    the figure as wide as the scatter plots and as tall as the rows need) or stand up;
    every call takes ``(position, value)`` and draws along the right axis."""

    def __init__(self, plt, labels: _Labels, n: int, row_height: float):
        self.horizontal = labels.numbered
        size = (labels.width(), max(3.2, row_height * n + 1.6)) if self.horizontal else (8.6, 4.6)
        self.fig, self.ax = plt.subplots(figsize=size, dpi=DPI)

    def bars(self, pos, values, width: float = 0.8, **kwargs) -> None:
        (self.ax.barh if self.horizontal else self.ax.bar)(pos, values, width, **kwargs)

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
        """Category ticks, the value axis' label, its margin and grid (horizontal: first row on
        top)."""
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


def plot_latency(report: Report, path: Path) -> Path | None:
    rows = [r for r in report.rows if r.ok and r.latency_ms is not None]
    if not rows:
        return None
    plt = _plt()
    style = styles(report.rows)
    labels = _Labels.of(report)
    pos = list(range(len(rows)))
    med = [r.latency_ms for r in rows]
    upper = [max((r.latency_p95_ms or r.latency_ms) - r.latency_ms, 0) for r in rows]
    threads = next((r.threads for r in rows if r.threads), None)
    batch = next((r.batch_size for r in rows if r.batch_size), None)
    plot = _Bars(plt, labels, len(rows), row_height=0.34)
    plot.bars(pos, med, color=[style[r.name][0] for r in rows], label="median")
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
    _legend_outside(plot.ax)
    return _save(plot.fig, path, plt)


def plot_size(report: Report, path: Path) -> Path | None:
    rows = [r for r in report.rows if r.ok and (r.disk_bytes or r.memory_bytes)]
    if not rows:
        return None
    plt = _plt()
    scale, unit = _size_scale(rows)
    labels = _Labels.of(report)
    pos = list(range(len(rows)))
    width = 0.4
    disk = [(r.disk_bytes or 0) / scale for r in rows]
    mem = [(r.memory_bytes or 0) / scale for r in rows]
    base = report.baseline
    changes = [
        tables.size_change(base.disk_bytes, r.disk_bytes)
        if base and base.disk_bytes and r.disk_bytes and r is not base
        else ""
        for r in rows
    ]
    plot = _Bars(plt, labels, len(rows), row_height=0.42)
    plot.bars(
        [p - width / 2 for p in pos], disk, width, label="checkpoint on disk", color="#1f77b4"
    )
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
    _legend_outside(plot.ax)
    return _save(plot.fig, path, plt)


def layer_error_row(report: Report) -> str | None:
    """The row whose per-layer error is plotted: the recommended one, else the first with data."""
    best = report.recommended
    if best is not None and report.layer_errors.get(best.name):
        return best.name
    return next((name for name, layers in report.layer_errors.items() if layers), None)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def plot_layer_error(report: Report, path: Path) -> Path | None:
    """Per-layer SQNR bars; an infinite SQNR (the layer's output is exact: it adds no error)
    is a hatched bar to the right edge labelled so, a missing one says "not measured"."""
    name = layer_error_row(report)
    if name is None:
        return None
    plt = _plt()
    layers = report.layer_errors[name]
    series = (
        ("out_sqnr_db", "output SQNR (accumulated)", "#1f77b4", -0.2),
        ("own_sqnr_db", "own SQNR (added by this layer)", "#ff7f0e", 0.2),
    )
    finite = [x[key] for x in layers for key, *_ in series if _finite(x.get(key))]
    edge = max(max(finite, default=0.0) * 1.25, 10.0)
    fig, ax = plt.subplots(figsize=(8.6, max(3.2, 0.36 * len(layers) + 1.8)), dpi=DPI)
    ys = list(range(len(layers)))
    for key, label, color, shift in series:
        vals = [x.get(key) for x in layers]
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
        if x.get("jump"):
            own = x.get("own_sqnr_db")
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
    ax.set_yticks(ys, [f"{x['name']} ({x['kind']})" for x in layers], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, edge * (1.18 if any(x.get("jump") for x in layers) else 1.02))
    ax.set_xlabel("SQNR vs float (dB, higher is better)")
    best = report.recommended
    ax.set_title(
        f"Per-layer quantization error: {name}"
        + (" (recommended)" if best and best.name == name else "")
    )
    ax.grid(True, axis="x", alpha=0.3)
    _legend_outside(ax)
    return _save(fig, path, plt)


def _save(fig, path: Path, plt, layout: bool = True) -> Path:
    if layout:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def write_plots(report: Report, directory: Path) -> list[Path]:
    """Write every plot that has data into ``directory``; returns the paths written."""
    makers = (
        plot_accuracy_vs_size,
        plot_accuracy_vs_latency,
        plot_latency,
        plot_size,
        plot_layer_error,
    )
    out = []
    for maker, filename in zip(makers, PLOT_FILES):
        written = maker(report, directory / filename)
        if written is not None:
            out.append(written)
    return out
