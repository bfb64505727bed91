"""The comparison as a table: one header, one line per row, as text cells.

Every output (terminal, Markdown, HTML) reads :func:`table`, so they show the same columns
and the same rounding. Accuracy is shown with its change vs float in points, sizes in MB
with the ratio to float, latency as median / p95 ms with the speed-up over float. A causal
LM's table (:data:`LM_HEADERS`) shows perplexity with its increase vs float in percent,
decode and prefill tokens/s at batch 1, time to first token, sizes and peak memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from quantlens.compare.recommend import (
    baseline,
    is_language_model,
    perplexity_increase,
    quality_names,
    size_change,
)
from quantlens.compare.results import Row

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


LM_HEADERS = (
    "method",
    "perplexity",
    "ppl increase %",
    "disk MB",
    "weights MB",
    "decode tok/s",
    "decode speed-up",
    "prefill tok/s",
    "first token ms",
    "peak mem MB",
    "notes",
)


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


def _ratio(base: float | None, value: float | None) -> str:
    if not base or not value:
        return ""
    return f"{base / value:.2f}×"


def _disk(row: Row, base: Row | None) -> str:
    disk = _mb(row.disk_bytes)
    if base is not None and row is not base and base.disk_bytes and row.disk_bytes:
        disk += f" ({size_change(base.disk_bytes, row.disk_bytes)})"
    return disk


def _layer_notes(row: Row) -> str:
    notes = ""
    if row.layers_quantized is not None:
        notes = f"layers: {row.layers_quantized} quantized, {row.layers_float} float"
        if row.float_kinds:
            notes += " (" + ", ".join(f"{n} {kind}" for kind, n in row.float_kinds.items()) + ")"
    return notes


def lm_cells(row: Row, base: Row | None) -> list[str]:
    """One line of a causal LM's table (:data:`LM_HEADERS`); ``base`` is the float row."""
    if not row.ok:
        return [row.name, "failed", *[""] * (len(LM_HEADERS) - 3), row.error or ""]
    rise = perplexity_increase(row, base)
    speed, base_speed = row.decode_tokens_per_s, base.decode_tokens_per_s if base else None
    return [
        row.name,
        _num(row.perplexity),
        "" if rise is None or row is base else f"{rise:+.2f}",
        _disk(row, base),
        _mb(row.memory_bytes),
        _num(speed, 1),
        "1.00×" if row is base else (_ratio(speed, base_speed) if speed and base_speed else ""),
        _num(row.prefill_tokens_per_s, 1),
        _num(row.time_to_first_token_ms, 1),
        _mb(row.peak_memory_bytes),
        _layer_notes(row),
    ]


def cells(row: Row, base: Row | None) -> list[str]:
    """One table line for ``row``; ``base`` is the float row (for the deltas)."""
    if not row.ok:
        return [row.name, "failed", "", "", "", "", "", "", "", "", row.error or ""]
    q, bq = row.quality, base.quality if base else None
    acc = _num(q)
    if q is not None and bq is not None and row is not base:
        acc += f" ({signed_points(q - bq)})"
    disk = _disk(row, base)
    latency = f"{_num(row.latency_ms, 3)} ({_num(row.latency_p95_ms, 3)})"
    speedup = "1.00×" if row is base else (_ratio(base.latency_ms, row.latency_ms) if base else "")
    items = f"{row.items_per_s:,.0f}" if row.items_per_s is not None else "–"
    notes = _layer_notes(row)
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
    ``settings.task``) names the quality column honestly (``"similarity %"`` for embeddings);
    a causal LM's rows (``"causal-lm"``) get :data:`LM_HEADERS`.

    Example:
        >>> headers, lines = table(comparison.rows, comparison.task)
    """
    base = baseline(rows)
    if task == "causal-lm" or is_language_model(rows):
        return LM_HEADERS, [lm_cells(r, base) for r in rows]
    headers = (HEADERS[0], quality_names(rows, task)[1], *HEADERS[2:])
    return headers, [cells(r, base) for r in rows]
