"""The comparison's raw numbers as CSV (bytes, ms, %), one line per row, for spreadsheets.

Example:
    >>> Path("results.csv").write_text(render_csv(comparison.rows))
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from quantlens.compare.recommend import is_language_model
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


LM_CSV_FIELDS = (
    "name",
    "method",
    "status",
    "error",
    "perplexity",
    "perplexity_tokens",
    "decode_tokens_per_s",
    "prefill_tokens_per_s",
    "time_to_first_token_ms",
    "disk_bytes",
    "memory_bytes",
    "num_parameters",
    "threads",
    "peak_memory_bytes",
    "quantize_s",
    "layers_quantized",
    "layers_float",
)


def render_csv(rows: Sequence[Row]) -> str:
    """The :data:`CSV_FIELDS` of each row (a causal LM's: :data:`LM_CSV_FIELDS`), with a
    header line; a ``runtime`` column after ``method`` when some row ran outside PyTorch
    (``compare(..., runtimes=...)``).

    Args:
        rows: the comparison's rows.

    Returns:
        The CSV text (``\\n`` line ends).
    """
    fields = list(LM_CSV_FIELDS if is_language_model(rows) else CSV_FIELDS)
    if any(r.runtime != "torch" for r in rows):
        fields.insert(fields.index("method") + 1, "runtime")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row.to_dict(), "runtime": row.runtime})
    return buf.getvalue()


__all__ = ["CSV_FIELDS", "LM_CSV_FIELDS", "render_csv"]
