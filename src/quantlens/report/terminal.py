"""The comparison table for the terminal (``rich``), as ``quantlens compare`` prints it.

Example:
    >>> Console().print(to_rich(comparison.rows, title="quantlens compare"))
"""

from __future__ import annotations

from collections.abc import Sequence

from quantlens.compare.results import Row
from quantlens.report.tables import HEADERS, LM_HEADERS, table

TERMINAL_COLUMNS = (
    "method",
    "accuracy %",
    "agreement %",
    "SQNR dB",
    "disk MB",
    "latency ms (p95)",
    "speed-up",
    "peak mem MB",
)


LM_TERMINAL_COLUMNS = (
    "method",
    "perplexity",
    "ppl increase %",
    "disk MB",
    "decode tok/s",
    "decode speed-up",
    "prefill tok/s",
    "peak mem MB",
)


def to_rich(rows: Sequence[Row], title: str | None = None, task: str | None = None):
    """The table as a ``rich.table.Table`` (the widest columns left out; failed rows show
    their error under the table, see :func:`failures`).

    Args:
        rows: the comparison's rows; title: the table's title; task: names the quality column.

    Returns:
        A ``rich.table.Table``.
    """
    from rich.table import Table

    headers, lines = table(rows, task)
    if headers == LM_HEADERS:
        keep = [LM_HEADERS.index(h) for h in LM_TERMINAL_COLUMNS]
    else:
        keep = [HEADERS.index(h) for h in TERMINAL_COLUMNS]
    t = Table(title=title)
    for i in keep:  # long names (a sweep's) wrap; the numbers never do
        if i == 0:
            t.add_column(headers[i], justify="left", overflow="fold", max_width=32)
        else:
            t.add_column(headers[i], justify="right", no_wrap=True)
    for row, line in zip(rows, lines):
        cells_shown = [line[i] for i in keep]
        cells_shown[0] = cells_shown[0].replace(",", ", ")  # a sweep label wraps between settings
        t.add_row(*cells_shown, style=None if row.ok else "red")
    return t


def failures(rows: Sequence[Row]) -> list[str]:
    """``"name: error"`` for each failed row."""
    return [f"{r.name}: {r.error}" for r in rows if not r.ok]


def declined(rows: Sequence[Row]) -> list[str]:
    """``"name: why"`` for each row whose method quantized no layer (it measures the float
    model: Dynamic on a model where int8 would only be slower)."""
    return [
        f"{r.name}: {next((n for n in r.notes if 'slower' in n), 'no layer quantized')}"
        for r in rows
        if r.ok and r.method != "float" and r.layers_quantized == 0
    ]


__all__ = ["LM_TERMINAL_COLUMNS", "TERMINAL_COLUMNS", "declined", "failures", "to_rich"]
