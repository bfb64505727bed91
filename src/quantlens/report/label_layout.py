"""Point labels that do not overlap: each label tries positions around its point, nearest
first, and takes the one that covers no other label, no marker and stays inside the axes
(a simple greedy repulsion, in the spirit of adjustText). Labels pushed away from their
point get a thin leader line.

Example:
    >>> fig.tight_layout()                      # place labels after the layout is final
    >>> place_labels(ax, [(x1, y1), (x2, y2)], ["float", "w8"])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_ANGLES = (35, -35, 145, -145, 90, -90, 0, 180, 60, -60, 120, -120)
_GAPS = (0, 7, 17, 31, 49, 71)  # pixels beyond the marker's clearance to the label's nearest corner
MARKER_RADIUS_PX = 13.0  # half the size a label keeps clear around every point (marker and ring)


def _overlap(a: tuple, b: tuple) -> float:
    """Overlap area of two boxes ``(x0, y0, x1, y1)``."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: tuple, frame: tuple) -> float:
    """How far (pixels, summed over the sides) ``box`` sticks out of ``frame``."""
    return (
        max(frame[0] - box[0], 0)
        + max(box[2] - frame[2], 0)
        + max(frame[1] - box[1], 0)
        + max(box[3] - frame[3], 0)
    )


def _box_at(x: float, y: float, w: float, h: float, angle: float, radius: float) -> tuple:
    """The box of a ``w`` x ``h`` label whose nearest corner/edge sits ``radius`` px from
    ``(x, y)`` in direction ``angle`` (degrees), and its alignment."""
    dx, dy = radius * math.cos(math.radians(angle)), radius * math.sin(math.radians(angle))
    ha = "left" if dx > 1 else "right" if dx < -1 else "center"
    va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
    x0 = x + dx if ha == "left" else x + dx - w if ha == "right" else x + dx - w / 2
    y0 = y + dy if va == "bottom" else y + dy - h if va == "top" else y + dy - h / 2
    return (x0, y0, x0 + w, y0 + h), dx, dy, ha, va


def place_labels(
    ax,
    points: Sequence[tuple[float, float]],
    labels: Sequence[str],
    *,
    fontsize: float = 8.5,
    bold: Sequence[bool] | None = None,
    marker_radius: float = MARKER_RADIUS_PX,
) -> list:
    """Annotate ``points`` (data coordinates) with ``labels`` without overlaps.

    Call it after the figure's layout is final (``tight_layout``) and the axis limits are
    set: it works in display pixels.

    Args:
        ax: the matplotlib axes.
        points: ``(x, y)`` per label, in data coordinates.
        labels: the texts.
        fontsize: label font size (points).
        bold: per label, whether to draw it bold (e.g. the recommended one).
        marker_radius: pixels around every point that no label may cover.

    Returns:
        The annotation artists.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame_box = ax.get_window_extent(renderer)
    frame = (frame_box.x0 + 2, frame_box.y0 + 2, frame_box.x1 - 2, frame_box.y1 - 2)
    pixels = [tuple(ax.transData.transform(p)) for p in points]
    r = marker_radius
    obstacles = [(x - r, y - r, x + r, y + r) for x, y in pixels]
    placed: list[tuple] = []
    to_points = 72.0 / fig.dpi
    artists = []
    for i, ((x, y), text) in enumerate(zip(pixels, labels)):
        weight = "bold" if bold is not None and bold[i] else "normal"
        probe = ax.text(0, 0, text, fontsize=fontsize, fontweight=weight)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        w, h = extent.width + 4, extent.height + 2
        best = None
        for radius in (r + gap for gap in _GAPS):
            for angle in _ANGLES:
                box, dx, dy, ha, va = _box_at(x, y, w, h, angle, radius)
                cost = (
                    sum(_overlap(box, o) for o in placed) * 4
                    + sum(_overlap(box, o) for j, o in enumerate(obstacles) if j != i)
                    + _outside(box, frame) * 200
                    + radius * 0.5
                )
                if best is None or cost < best[0]:
                    best = (cost, box, dx, dy, ha, va, radius)
            if best[0] <= radius * 0.5 + 1e-9:  # nothing covered at this distance: stop looking
                break
        _, box, dx, dy, ha, va, radius = best
        placed.append(box)
        arrow = (
            {"arrowstyle": "-", "color": "#777777", "lw": 0.7, "shrinkA": 0, "shrinkB": 4}
            if radius > r + 8
            else None
        )
        artists.append(
            ax.annotate(
                text,
                points[i],
                xytext=(dx * to_points, dy * to_points),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=fontsize,
                fontweight=weight,
                arrowprops=arrow,
                zorder=5,
                annotation_clip=False,
            )
        )
    return artists
