"""The comparison as a table: one header, one line per row, as text cells; and as JSON.

Every output (terminal, Markdown, HTML, CSV) reads :func:`table`, so they show the same
columns and the same rounding. Accuracy is shown with its change vs float in points, sizes
in MB with the ratio to float, latency as median / p95 ms with the speed-up over float.

:func:`to_json_text` writes strict JSON (no ``Infinity``/``NaN``, which ``JSON.parse`` and
most parsers reject): a non-finite number is written as ``null`` and its place is listed
under ``"non_finite"`` as a JSON Pointer (RFC 6901), e.g. ``{"/rows/0/sqnr_db": "inf"}``
(the float row's SQNR against itself is infinite). :func:`from_json_text` puts them back.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

from quantlens.eval.compare import Row

HEADERS = (
    "method",
    "accuracy %",
    "agreement %",
    "SQNR dB",
    "disk MB",
    "weights MB",
    "latency ms (p95)",
    "speed-up",
    "items/s",
    "peak mem MB",
    "notes",
)
CSV_FIELDS = (
    "name",
    "method",
    "status",
    "error",
    "accuracy",
    "metric",
    "agreement",
    "sqnr_db",
    "cosine",
    "disk_bytes",
    "memory_bytes",
    "num_parameters",
    "latency_ms",
    "latency_p95_ms",
    "items_per_s",
    "batch_size",
    "threads",
    "peak_memory_bytes",
    "model_memory_bytes",
    "quantize_s",
    "layers_quantized",
    "layers_float",
)


def quality(row: Row) -> float | None:
    """The number rows are ranked on: accuracy (or embedding similarity) %, else the user
    metric, else agreement with float %."""
    for value in (row.accuracy, row.metric, row.agreement):
        if value is not None:
            return value
    return None


def quality_names(rows: Sequence[Row], task: str | None = None) -> tuple[str, str]:
    """What :func:`quality` means for these rows: ``(axis label, table header)``, e.g.
    ``("accuracy (%)", "accuracy %")``, ``("similarity to float (%)", "similarity %")`` for
    embeddings (``task``, the comparison's ``settings["task"]``, is ``"embedding"``: the
    "accuracy" is the cosine similarity of each embedding to the float model's),
    ``("metric", "metric")`` or ``("agreement with float (%)", "agreement % (no labels)")``.
    Without a measured row the header is ``"accuracy %"``."""
    ok = [r for r in rows if r.ok]
    if task == "embedding" and any(r.accuracy is not None for r in ok):
        return "similarity to float (%)", "similarity %"
    if any(r.accuracy is not None for r in ok):
        return "accuracy (%)", "accuracy %"
    if any(r.metric is not None for r in ok):
        return "metric", "metric"
    return "agreement with float (%)", "agreement % (no labels)" if ok else HEADERS[1]


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


def signed_points(delta: float) -> str:
    """A change in points for a table cell: ``"+0.22"``, ``"-0.50"``, and ``"0.00"`` for
    anything that rounds to zero (never ``"-0.00"``)."""
    return "0.00" if abs(delta) < 0.005 else f"{delta:+.2f}"


def points_change(delta: float) -> str:
    """A change in points for a sentence: ``"0.22 points higher"``, ``"0.50 points lower"``,
    or ``"no change"`` when it rounds to zero.

    Example:
        >>> points_change(-0.004), points_change(0.2222), points_change(-1.5)
        ('no change', '0.22 points higher', '1.50 points lower')
    """
    if abs(delta) < 0.005:
        return "no change"
    return f"{abs(delta):.2f} points {'higher' if delta > 0 else 'lower'}"


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
        acc += f" ({signed_points(q - bq)})"
    disk = _mb(row.disk_bytes)
    if base is not None and row is not base and base.disk_bytes and row.disk_bytes:
        disk += f" ({size_change(base.disk_bytes, row.disk_bytes)})"
    latency = f"{_num(row.latency_ms, 3)} ({_num(row.latency_p95_ms, 3)})"
    speedup = "1.00×" if row is base else (_ratio(base.latency_ms, row.latency_ms) if base else "")
    items = f"{row.items_per_s:,.0f}" if row.items_per_s is not None else "–"
    notes = ""
    if row.layers_quantized is not None:
        notes = f"layers: {row.layers_quantized} quantized, {row.layers_float} float"
        if row.float_kinds:
            notes += " (" + ", ".join(f"{n} {kind}" for kind, n in row.float_kinds.items()) + ")"
    return [
        row.name,
        acc,
        _num(row.agreement, 1),
        _num(row.sqnr_db, 1),
        disk,
        _mb(row.memory_bytes),
        latency,
        speedup,
        items,
        _mb(row.peak_memory_bytes),
        notes,
    ]


def table(rows: Sequence[Row], task: str | None = None) -> tuple[tuple[str, ...], list[list[str]]]:
    """``(headers, lines)`` of the comparison table; ``task`` (the comparison's
    ``settings["task"]``) names the quality column honestly (``"similarity %"`` for embeddings)."""
    base = next((r for r in rows if r.method == "float" and r.ok), None)
    headers = (HEADERS[0], quality_names(rows, task)[1], *HEADERS[2:])
    return headers, [cells(r, base) for r in rows]


def to_markdown(rows: Sequence[Row], task: str | None = None) -> str:
    """The table as GitHub-flavoured Markdown."""
    headers, lines = table(rows, task)
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


def to_rich(rows: Sequence[Row], title: str | None = None, task: str | None = None):
    """The table as a ``rich.table.Table`` for the terminal (the widest columns left out;
    failed rows show their error under the table, see :func:`failures`)."""
    from rich.table import Table

    headers, lines = table(rows, task)
    keep = [HEADERS.index(h) for h in TERMINAL_COLUMNS]
    t = Table(title=title)
    for i in keep:  # long names (a sweep's) wrap; the numbers never do
        if i == 0:
            t.add_column(headers[i], justify="left", overflow="fold", max_width=32)
        else:
            t.add_column(headers[i], justify="right", no_wrap=True)
    for row, line in zip(rows, lines):
        cells_shown = [line[i] for i in keep]
        cells_shown[0] = cells_shown[0].replace(
            ",", ", "
        )  # a sweep label wraps between its settings
        t.add_row(*cells_shown, style=None if row.ok else "red")
    return t


def failures(rows: Sequence[Row]) -> list[str]:
    """``"name: error"`` for each failed row."""
    return [f"{r.name}: {r.error}" for r in rows if not r.ok]


# --- JSON -----------------------------------------------------------------------------------

NON_FINITE_KEY = "non_finite"
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _escape_pointer(key) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _strict(value, pointer: str, found: dict[str, str]):
    """``value`` with every non-finite float replaced by None, its pointer noted in ``found``."""
    if isinstance(value, float) and not math.isfinite(value):
        found[pointer] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return None
    if isinstance(value, dict):
        return {k: _strict(v, f"{pointer}/{_escape_pointer(k)}", found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v, f"{pointer}/{i}", found) for i, v in enumerate(value)]
    return value


def to_json_text(data: dict) -> str:
    """``data`` as strict JSON (see the module docstring for how ``inf``/``nan`` are kept).

    Example:
        >>> json.loads(to_json_text({"rows": [{"sqnr_db": float("inf")}]}))
        {'rows': [{'sqnr_db': None}], 'non_finite': {'/rows/0/sqnr_db': 'inf'}}
    """
    found: dict[str, str] = {}
    clean = _strict(data, "", found)
    if found:
        clean[NON_FINITE_KEY] = found
    return json.dumps(clean, indent=1, default=str, allow_nan=False)


def from_json_text(text: str) -> dict:
    """The dict :func:`to_json_text` wrote, with its non-finite numbers restored (files an
    older quantlens wrote with bare ``Infinity``/``NaN`` are read too)."""
    data = json.loads(text)
    for pointer, kind in (data.pop(NON_FINITE_KEY, None) or {}).items():
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        if not parts or kind not in _NON_FINITE:
            continue
        parent = data
        try:
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            last = int(parts[-1]) if isinstance(parent, list) else parts[-1]
            if parent[last] is None:
                parent[last] = _NON_FINITE[kind]
        except (KeyError, IndexError, ValueError, TypeError):
            continue  # a pointer that does not resolve: leave the null
    return data
