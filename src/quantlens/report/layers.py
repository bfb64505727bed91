"""Per-layer quantization error of a method, for the report's layer plot (from
:func:`quantlens.analysis.compare_layers`), kept as plain JSON-ready dicts."""

from __future__ import annotations

import math

from torch import nn

from quantlens.analysis import LayerComparison, compare_layers


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def error_rows(result: LayerComparison) -> list[dict]:
    """:func:`layer_errors`' dicts from a :class:`~quantlens.analysis.LayerComparison` already
    measured (``compare(..., analysis=True)`` measures one per row and keeps both forms).

    Args:
        result: what :func:`~quantlens.analysis.compare_layers` returned.

    Returns:
        The dicts :func:`layer_errors` returns, one per layer of ``result``.

    Example:
        >>> error_rows(compare_layers(model, qmodel, [batch]))[0]["own_sqnr_db"]
    """
    return [
        {
            "name": x.name,
            "kind": x.kind,
            "out_sqnr_db": _finite(x.out_sqnr_db),
            "own_sqnr_db": _finite(x.own_sqnr_db),
            "weight_sqnr_db": _finite(x.weight_sqnr_db),
            "jump": x.jump,
        }
        for x in result.layers
    ]


def layer_errors(
    float_model: nn.Module, q_model: nn.Module, inputs, *, max_batches: int = 1
) -> list[dict]:
    """One dict per matched layer, in execution order.

    Returns:
        ``[{"name", "kind", "out_sqnr_db", "own_sqnr_db", "weight_sqnr_db", "jump"}, ...]``
        (SQNR in dB; ``inf`` where exact).
    """
    return error_rows(compare_layers(float_model, q_model, inputs, max_batches=max_batches))
