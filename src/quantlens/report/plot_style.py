"""How every comparison plot draws its rows: one colour and marker per method (float: a
black square), point labels by name or, with long names (a sweep) or many rows, by number.
A row measured in another runtime (``"static (onnxruntime)"``) keeps the colour of the
PyTorch row it was exported from and takes that runtime's marker (a star) and hatched bars.

Example:
    >>> styles(comparison.rows)["static"]
    ('#1f77b4', 'o')
"""

from __future__ import annotations

from dataclasses import dataclass

from quantlens.compare.results import Comparison, Row

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
RUNTIME_MARKERS = {"onnxruntime": "*"}  # runtime -> marker of its rows (torch: per method)
RUNTIME_HATCH = "//"  # bars of rows measured outside PyTorch
NUMBERED_NAME_LENGTH = 12  # longer names (or more rows than MAX_NAMED) are numbered
MAX_NAMED = 8


def styles(rows: list[Row]) -> dict[str, tuple[str, str]]:
    """``{row name: (colour, marker)}``: float a black square, every other row its own
    colour and marker, the same in every plot; a row of another runtime the colour of its
    PyTorch row and the runtime's marker (:data:`RUNTIME_MARKERS`)."""
    out, i = {}, 0
    for r in rows:
        if r.runtime != "torch":
            continue
        if r.method == "float":
            out[r.name] = ("#000000", "s")
        else:
            out[r.name] = (PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)])
            i += 1
    for r in rows:
        if r.runtime != "torch":
            color = out.get(r.source_name, (PALETTE[i % len(PALETTE)], ""))[0]
            out[r.name] = (color, RUNTIME_MARKERS.get(r.runtime, "*"))
    return out


def hatch_runtime_bars(bars, rows: list[Row]) -> None:
    """Hatch the bars (one per row, in order) of rows measured outside PyTorch (white
    lines: they show on every colour, float's black too)."""
    for patch, r in zip(bars, rows):
        if r.runtime != "torch":
            patch.set_hatch(RUNTIME_HATCH)
            patch.set_edgecolor("white")


def numbered(rows: list[Row]) -> bool:
    """Whether the plots label points with numbers (long names or many rows)."""
    return len(rows) > MAX_NAMED or any(len(r.name) > NUMBERED_NAME_LENGTH for r in rows)


@dataclass(frozen=True)
class Labels:
    """How every plot of a report names its measured rows (computed once per plot with
    :meth:`of`): ``tags`` maps a row name to its point label, the name itself or, when
    ``numbered`` (:func:`numbered`), its number."""

    tags: dict[str, str]
    numbered: bool

    @classmethod
    def of(cls, report: Comparison) -> Labels:
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


def size_scale(rows: list[Row]) -> tuple[float, str]:
    """``(divisor, unit)`` that shows these rows' byte counts in kB, MB or GB."""
    biggest = max(((r.disk_bytes or r.memory_bytes or 0) for r in rows), default=0)
    return (1e3, "kB") if biggest < 1e6 else (1e6, "MB") if biggest < 1e9 else (1e9, "GB")


__all__ = [
    "MARKERS",
    "MAX_NAMED",
    "NUMBERED_NAME_LENGTH",
    "PALETTE",
    "PARETO_COLOR",
    "RUNTIME_HATCH",
    "RUNTIME_MARKERS",
    "Labels",
    "hatch_runtime_bars",
    "numbered",
    "size_scale",
    "styles",
]
