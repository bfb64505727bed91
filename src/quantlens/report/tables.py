"""The comparison as a table: one header, one line per row, as text cells.

Every output (terminal, Markdown, HTML, CSV) reads :func:`table`, so they show the same
columns and the same rounding. Accuracy is shown with its change vs float in points, sizes
in MB with the ratio to float, latency as median / p95 ms with the speed-up over float.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from quantlens.eval.compare import Row

HEADERS = (
    "method", "accuracy %", "agreement %", "SQNR dB", "disk MB", "weights MB",
    "latency ms (p95)", "speed-up", "items/s", "peak mem MB", "notes",
)
CSV_FIELDS = (
    "name", "method", "status", "error", "accuracy", "metric", "agreement", "sqnr_db", "cosine",
    "disk_bytes", "memory_bytes", "num_parameters", "latency_ms", "latency_p95_ms", "items_per_s",
    "batch_size", "threads", "peak_memory_bytes", "model_memory_bytes", "quantize_s",
    "layers_quantized", "layers_float",
)


def quality(row: Row) -> float | None:
    """The number rows are ranked on: accuracy (or embedding similarity) %, else the user
    metric, else agreement with float %."""
    for value in (row.accuracy, row.metric, row.agreement):
        if value is not None:
            return value
    return None


def quality_label(rows: Sequence[Row]) -> str:
    """What :func:`quality` means for these rows, for axis labels."""
    ok = [r for r in rows if r.ok]
    if any(r.accuracy is not None for r in ok):
        return "accuracy (%)"
    if any(r.metric is not None for r in ok):
        return "metric"
    return "agreement with float (%)"


def _mb(value: int | None) -> str:
    if value is None:
        return "–"
    mb = value / 1e6
    return f"{mb:.3f}" if mb < 1 else f"{mb:.2f}" if mb < 100 else f"{mb:.0f}"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}"


def _ratio(base: float | None, value: float | None) -> str:
    if not base or not value:
        return ""
    return f"{base / value:.2f}×"


def size_change(base: int, value: int) -> str:
    """``"2.89× smaller"`` or ``"1.05× larger"``."""
    return f"{base / value:.2f}× smaller" if value <= base else f"{value / base:.2f}× larger"


def cells(row: Row, base: Row | None) -> list[str]:
    """One table line for ``row``; ``base`` is the float row (for the deltas)."""
    if not row.ok:
        return [row.name, "failed", "", "", "", "", "", "", "", "", row.error or ""]
    q, bq = quality(row), quality(base) if base else None
    acc = _num(q)
    if q is not None and bq is not None and row is not base:
        acc += f" ({q - bq:+.2f})"
    disk = _mb(row.disk_bytes)
    if base is not None and row is not base and base.disk_bytes and row.disk_bytes:
        disk += f" ({size_change(base.disk_bytes, row.disk_bytes)})"
    latency = f"{_num(row.latency_ms, 3)} ({_num(row.latency_p95_ms, 3)})"
    speedup = "1.00×" if row is base else (_ratio(base.latency_ms, row.latency_ms) if base else "")
    items = f"{row.items_per_s:,.0f}" if row.items_per_s is not None else "–"
    notes = ""
    if row.layers_quantized is not None:
        notes = f"layers: {row.layers_quantized} quantized, {row.layers_float} float"
    return [row.name, acc, _num(row.agreement, 1), _num(row.sqnr_db, 1), disk, _mb(row.memory_bytes),
            latency, speedup, items, _mb(row.peak_memory_bytes), notes]


def table(rows: Sequence[Row]) -> tuple[tuple[str, ...], list[list[str]]]:
    """``(headers, lines)`` of the comparison table."""
    base = next((r for r in rows if r.method == "float" and r.ok), None)
    return HEADERS, [cells(r, base) for r in rows]


def to_markdown(rows: Sequence[Row]) -> str:
    """The table as GitHub-flavoured Markdown."""
    headers, lines = table(rows)
    esc = lambda s: s.replace("|", "\\|")
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(esc(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def to_csv_text(rows: Sequence[Row]) -> str:
    """Raw numbers (bytes, ms, %), one line per row, for spreadsheets."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.to_dict())
    return buf.getvalue()


TERMINAL_COLUMNS = ("method", "accuracy %", "agreement %", "SQNR dB", "disk MB", "latency ms (p95)",
                    "speed-up", "peak mem MB")


def to_rich(rows: Sequence[Row], title: str | None = None):
    """The table as a ``rich.table.Table`` for the terminal (the widest columns left out;
    failed rows show their error under the table, see :func:`failures`)."""
    from rich.table import Table

    headers, lines = table(rows)
    keep = [headers.index(h) for h in TERMINAL_COLUMNS]
    t = Table(title=title)
    for i in keep:
        t.add_column(headers[i], justify="left" if i == 0 else "right", no_wrap=True)
    for row, line in zip(rows, lines):
        t.add_row(*(line[i] for i in keep), style=None if row.ok else "red")
    return t


def failures(rows: Sequence[Row]) -> list[str]:
    """``"name: error"`` for each failed row."""
    return [f"{r.name}: {r.error}" for r in rows if not r.ok]
