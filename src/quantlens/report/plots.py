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

from pathlib import Path

from quantlens.compare.recommend import is_language_model, quality_names
from quantlens.compare.results import Comparison, Row
from quantlens.report import figure
from quantlens.report.bar_plots import plot_latency, plot_size
from quantlens.report.figure import DPI, legend_outside, pyplot
from quantlens.report.label_layout import place_labels
from quantlens.report.layer_plot import plot_layer_error
from quantlens.report.plot_style import PARETO_COLOR, Labels, size_scale, styles

PLOT_FILES = (
    "accuracy_vs_size.png",
    "accuracy_vs_latency.png",
    "latency.png",
    "size.png",
    "layer_error.png",
)
# a causal LM's plots, in place of the two accuracy plots
LM_PLOT_FILES = ("perplexity_vs_size.png", "perplexity_vs_decode.png")


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points ``(cost, quality, name)`` no other point beats on both (lower cost, higher
    quality), sorted by cost.

    Example:
        >>> [p[2] for p in pareto_front([(1, 90, "a"), (2, 95, "b"), (3, 94, "c")])]
        ['a', 'b']
    """
    front: list[tuple[float, float, str]] = []
    for cost, qual, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or qual > front[-1][1]:
            front.append((cost, qual, name))
    return front


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
    fig,
    ax,
    rows: list[Row],
    x_of,
    report: Comparison,
    labels: Labels,
    *,
    pareto: bool,
    y_of=None,
) -> None:
    """Quality (or ``y_of(row)``) against ``x_of(row)``: markers, budget line, Pareto rings,
    legend, labels."""
    best = report.recommended
    style, tags = styles(report.rows), labels.tags
    lm = y_of is not None
    y_of = y_of or (lambda r: r.quality)
    measured = [(x_of(r), y_of(r), r) for r in rows]
    items = [(x, y, r) for x, y, r in measured if x is not None and y is not None]
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
    (_perplexity_axis if lm else _quality_axis)(ax, rows, report)
    ax.margins(x=0.14, y=0.16)
    ax.grid(True, alpha=0.3)
    legend_outside(ax)
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


def _quality_axis(ax, rows, report: Comparison) -> None:
    label, _ = quality_names(rows, report.task)
    ax.set_ylabel(label)
    base = report.baseline
    bq = base.quality if base else None
    if bq is not None and "%" in label:
        ax.axhline(
            bq - report.budget.max_accuracy_drop,
            color="#999999",
            linestyle=":",
            linewidth=1.2,
            label=f"budget: float − {report.budget.max_accuracy_drop:g} point(s)",
            zorder=1,
        )


def _perplexity_axis(ax, rows, report: Comparison) -> None:
    ax.set_ylabel("perplexity (lower is better)")
    base = report.baseline
    if base is not None and base.perplexity:
        rise = report.budget.max_perplexity_increase
        ax.axhline(
            base.perplexity * (1 + rise / 100),
            color="#999999",
            linestyle=":",
            linewidth=1.2,
            label=f"budget: float + {rise:g}%",
            zorder=1,
        )


def _lm_rows(report: Comparison, x_of) -> list[Row]:
    return [r for r in report.rows if r.ok and r.perplexity is not None and x_of(r)]


def _disk_of(r: Row) -> int | None:
    return r.disk_bytes or r.memory_bytes


def plot_perplexity_vs_size(report: Comparison, path: Path) -> Path | None:
    """A causal LM's perplexity against checkpoint size (None: nothing to plot)."""
    rows = _lm_rows(report, _disk_of)
    if not rows:
        return None
    plt = pyplot()
    scale, unit = size_scale(rows)
    labels = Labels.of(report)
    fig, ax = plt.subplots(figsize=(labels.width(), 4.8), dpi=DPI)
    ax.set_xlabel(f"checkpoint size on disk ({unit})")
    ax.set_title("Perplexity vs size (down and left is better)")
    x_of = lambda r: _disk_of(r) / scale
    _scatter(fig, ax, rows, x_of, report, labels, pareto=False, y_of=lambda r: r.perplexity)
    return figure.save(fig, path, plt, layout=False)


def plot_perplexity_vs_decode(report: Comparison, path: Path) -> Path | None:
    """A causal LM's perplexity against decode tokens/s at batch 1 (None: nothing to plot)."""
    rows = _lm_rows(report, lambda r: r.decode_tokens_per_s)
    if not rows:
        return None
    plt = pyplot()
    labels = Labels.of(report)
    fig, ax = plt.subplots(figsize=(labels.width(), 4.8), dpi=DPI)
    ax.set_xlabel("decode tokens/s at batch 1")
    ax.set_title("Perplexity vs decode speed (down and right is better)")
    _scatter(
        fig,
        ax,
        rows,
        lambda r: r.decode_tokens_per_s,
        report,
        labels,
        pareto=False,
        y_of=lambda r: r.perplexity,
    )
    return figure.save(fig, path, plt, layout=False)


def plot_accuracy_vs_size(report: Comparison, path: Path) -> Path | None:
    rows = [
        r
        for r in report.rows
        if r.ok and (r.disk_bytes or r.memory_bytes) and r.quality is not None
    ]
    if not rows:
        return None
    plt = pyplot()
    scale, unit = size_scale(rows)
    labels = Labels.of(report)
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
    return figure.save(fig, path, plt, layout=False)


def plot_accuracy_vs_latency(report: Comparison, path: Path) -> Path | None:
    rows = [r for r in report.rows if r.ok and r.latency_ms is not None and r.quality is not None]
    if not rows:
        return None
    plt = pyplot()
    labels = Labels.of(report)
    fig, ax = plt.subplots(figsize=(labels.width(), 4.8), dpi=DPI)
    batch = next((r.batch_size for r in rows if r.batch_size), None)
    ax.set_xlabel(f"median latency per batch of {batch} (ms)" if batch else "median latency (ms)")
    ax.set_title("Accuracy vs latency (up and left is better)")
    _scatter(fig, ax, rows, lambda r: r.latency_ms, report, labels, pareto=True)
    return figure.save(fig, path, plt, layout=False)


def write_plots(report: Comparison, directory: Path) -> list[Path]:
    """Write every plot that has data into ``directory``; returns the paths written. A causal
    LM gets :data:`LM_PLOT_FILES` instead of the accuracy plots."""
    makers = (
        plot_accuracy_vs_size,
        plot_accuracy_vs_latency,
        plot_latency,
        plot_size,
        plot_layer_error,
    )
    pairs = list(zip(makers, PLOT_FILES))
    if is_language_model(report.rows):
        lm_makers = (plot_perplexity_vs_size, plot_perplexity_vs_decode)
        pairs = [*zip(lm_makers, LM_PLOT_FILES), *pairs[2:]]
    out = []
    for maker, filename in pairs:
        written = maker(report, directory / filename)
        if written is not None:
            out.append(written)
    return out


__all__ = [
    "LM_PLOT_FILES",
    "PARETO_COLOR",
    "PLOT_FILES",
    "pareto_front",
    "plot_accuracy_vs_latency",
    "plot_accuracy_vs_size",
    "plot_latency",
    "plot_layer_error",
    "plot_perplexity_vs_decode",
    "plot_perplexity_vs_size",
    "plot_size",
    "styles",
    "write_plots",
]
