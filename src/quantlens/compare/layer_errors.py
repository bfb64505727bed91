"""Per-layer quantization error of a method, for the report's layer plot (from
:func:`quantlens.analysis.compare_layers`), as :class:`~quantlens.compare.results.LayerErrorRow`
records.

Example:
    >>> layer_errors(model, qmodel, [batch])[0].own_sqnr_db
    41.2
"""

from __future__ import annotations

import math

from torch import nn

from quantlens.analysis import LayerComparison, compare_layers
from quantlens.compare.results import LayerErrorRow


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def error_rows(result: LayerComparison) -> list[LayerErrorRow]:
    """:func:`layer_errors`' rows from a :class:`~quantlens.analysis.LayerComparison` already
    measured (``compare(..., analysis=True)`` measures one per row and keeps both forms).

    Args:
        result: what :func:`~quantlens.analysis.compare_layers` returned.

    Returns:
        One :class:`~quantlens.compare.results.LayerErrorRow` per layer of ``result``.

    Example:
        >>> error_rows(compare_layers(model, qmodel, [batch]))[0].own_sqnr_db
    """
    return [
        LayerErrorRow(
            name=x.name,
            kind=x.kind,
            out_sqnr_db=_finite(x.out_sqnr_db),
            own_sqnr_db=_finite(x.own_sqnr_db),
            weight_sqnr_db=_finite(x.weight_sqnr_db),
            jump=x.jump,
        )
        for x in result.layers
    ]


def layer_errors(
    float_model: nn.Module, q_model: nn.Module, inputs, *, max_batches: int = 1
) -> list[LayerErrorRow]:
    """One row per matched layer, in execution order (SQNR in dB; ``inf`` where exact).

    Args:
        float_model, q_model: the float model and its quantized version.
        inputs: data they are compared on; max_batches: how many of its batches.

    Returns:
        ``[LayerErrorRow(name, kind, out_sqnr_db, own_sqnr_db, weight_sqnr_db, jump), ...]``.
    """
    return error_rows(compare_layers(float_model, q_model, inputs, max_batches=max_batches))


__all__ = ["error_rows", "layer_errors"]
