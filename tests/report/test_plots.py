"""What the plots draw: labels that do not overlap, one style per method, the Pareto front,
infinite SQNR drawn distinctly (checked on the matplotlib figures before they are saved)."""

from __future__ import annotations

import itertools

import matplotlib
import pytest

from quantlens.compare.results import Comparison, Row
from quantlens.report import Report, figure, plots
from quantlens.report.label_layout import place_labels

matplotlib.use("Agg", force=True)


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save, kept open for inspection."""
    kept = []

    def keep(fig, path, plt, layout=True):
        if layout:
            fig.tight_layout()
        fig.canvas.draw()
        kept.append(fig)
        return path

    monkeypatch.setattr(figure, "save", keep)
    yield kept
    import matplotlib.pyplot as plt

    for fig in kept:
        plt.close(fig)


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _texts(ax) -> list:
    return [c for c in ax.get_children() if isinstance(c, matplotlib.text.Annotation)]


def test_labels_of_crowded_points_do_not_overlap():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    points = [(1.0, 99.33), (1.02, 99.33), (1.04, 99.33), (3.0, 99.1), (3.01, 99.12)]
    ax.scatter(*zip(*points))
    ax.set_xlim(0, 4)
    ax.set_ylim(98, 100)
    fig.tight_layout()
    artists = place_labels(ax, points, ["float", "w8", "dynamic", "static", "qat"])
    fig.canvas.draw()
    boxes = [a.get_window_extent() for a in artists]
    for a, b in itertools.combinations(boxes, 2):
        assert not _boxes_overlap(a, b), (a, b)
    frame = ax.get_window_extent()
    assert all(
        frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
        for b in boxes
    )
    plt.close(fig)


def _report(rows, layers=None) -> Report:
    return Report(Comparison(rows, {}, None, {"task": "classification"}), layer_errors=layers or {})


def _row(name, method, acc, disk, lat):
    return Row(
        name,
        method,
        disk_bytes=disk,
        memory_bytes=disk,
        latency_ms=lat,
        latency_p95_ms=lat * 1.1,
        batch_size=64,
        threads=1,
        accuracy=acc,
        agreement=100.0,
    )


def test_accuracy_vs_size_styles_and_coinciding_points(figures, tmp_path):
    rows = [
        _row("float", "float", 99.33, 118_000, 2.0),
        _row("dynamic", "dynamic", 99.33, 124_000, 1.8),
        _row("w8", "weight_only", 99.33, 121_000, 1.7),
        _row("w4", "weight_only", 99.33, 121_000, 2.5),
        _row("static", "static", 99.0, 41_000, 0.8),
    ]
    plots.plot_accuracy_vs_size(_report(rows), tmp_path / "s.png")
    ax = figures[0].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "float" in legend and not any("(float)" in t for t in legend)
    assert "static (recommended)" in legend
    labels = [t.get_text() for t in _texts(ax)]
    assert (
        "w8 = w4" in labels
    )  # same size and accuracy: one shared label, not two on top of each other
    boxes = [t.get_window_extent() for t in _texts(ax)]
    assert not any(_boxes_overlap(a, b) for a, b in itertools.combinations(boxes, 2))
    styles = plots.styles(rows)
    assert len({s for n, s in styles.items()}) == len(rows)  # a colour and marker per method
    assert styles["float"] == ("#000000", "s")
    assert ax.get_xlabel() == "checkpoint size on disk (kB)"


def test_a_one_point_pareto_front_is_a_ring_not_an_invisible_line(figures, tmp_path):
    rows = [
        _row("float", "float", 99.33, 118_000, 2.0),
        _row("qat", "qat", 99.56, 41_000, 0.7),
        _row("w8", "weight_only", 99.33, 45_000, 1.7),
    ]
    plots.plot_accuracy_vs_latency(_report(rows), tmp_path / "l.png")
    ax = figures[0].axes[0]
    assert not [
        line
        for line in ax.get_lines()
        if len(line.get_xdata()) > 1 and line.get_linestyle() == "--"
    ]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Pareto front (this point alone)" in legend
    ring = next(c for c in ax.collections if c.get_label().startswith("Pareto"))
    assert len(ring.get_offsets()) == 1 and tuple(ring.get_offsets()[0]) == (0.7, 99.56)
    qat_color = plots.styles(rows)["qat"][0]
    assert matplotlib.colors.to_hex(ring.get_edgecolor()[0]) != qat_color


def test_two_point_front_draws_the_step_line(figures, tmp_path):
    rows = [
        _row("float", "float", 99.33, 118_000, 2.0),
        _row("static", "static", 99.0, 41_000, 0.7),
    ]
    plots.plot_accuracy_vs_latency(_report(rows), tmp_path / "l.png")
    ax = figures[0].axes[0]
    assert "Pareto front" in [t.get_text() for t in ax.get_legend().get_texts()]
    steps = [
        line
        for line in ax.get_lines()
        if line.get_linestyle() == "--" and len(line.get_xdata()) >= 2
    ]
    assert steps and matplotlib.colors.to_hex(steps[0].get_color()) == plots.PARETO_COLOR


def test_infinite_layer_sqnr_is_hatched_and_labelled_exact(figures, tmp_path):
    rows = [_row("float", "float", 99.33, 118_000, 2.0), _row("qat", "qat", 99.56, 41_000, 0.7)]
    layers = {
        "qat": [
            {
                "name": "conv",
                "kind": "ConvReLU2d",
                "out_sqnr_db": 24.0,
                "own_sqnr_db": 24.0,
                "jump": True,
            },
            {
                "name": "fc",
                "kind": "Linear",
                "out_sqnr_db": 21.7,
                "own_sqnr_db": float("inf"),
                "jump": False,
            },
        ]
    }
    plots.plot_layer_error(_report(rows, layers), tmp_path / "e.png")
    ax = figures[0].axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_facecolor()[:3] == (1.0, 1.0, 1.0)
    finite_max = max(p.get_width() for p in ax.patches if not p.get_hatch())
    assert (
        finite_max == 24.0 and hatched[0].get_width() > finite_max
    )  # reaches the edge, not a fake 80 dB
    assert "∞ exact" in [t.get_text() for t in _texts(ax)]
    assert any("exact" in t.get_text() for t in ax.get_legend().get_texts())


def test_sweeps_number_their_points(figures, tmp_path):
    rows = [_row("float", "float", 99.33, 118_000, 2.0)]
    rows += [
        _row(
            f"observer=minmax,per_channel={pc},backend={b}",
            "static",
            99.0 + i / 10,
            41_000,
            0.7 + i / 10,
        )
        for i, (pc, b) in enumerate(itertools.product((True, False), ("x86", "qnnpack")))
    ]
    report = _report(rows)
    plots.plot_accuracy_vs_latency(report, tmp_path / "l.png")
    plots.plot_latency(report, tmp_path / "t.png")
    scatter, bars = figures[0].axes[0], figures[1].axes[0]
    assert sorted(t.get_text() for t in _texts(scatter)) == ["1", "2", "3", "4", "5"]
    legend = [t.get_text() for t in scatter.get_legend().get_texts()]
    assert "3  observer=minmax,per_channel=True,backend=qnnpack" in legend and "1  float" in legend
    assert [t.get_text() for t in bars.get_yticklabels()][
        1
    ] == "observer=minmax,per_channel=True,backend=x86  2"
