"""The comparison's raw numbers as CSV (bytes, ms, %), one line per row, for spreadsheets.

Example:
    >>> Path("results.csv").write_text(render_csv(comparison.rows))
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from quantlens.compare.results import Row

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


def render_csv(rows: Sequence[Row]) -> str:
    """The :data:`CSV_FIELDS` of each row, with a header line.

    Args:
        rows: the comparison's rows.

    Returns:
        The CSV text (``\\n`` line ends).
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.to_dict())
    return buf.getvalue()


__all__ = ["CSV_FIELDS", "render_csv"]
