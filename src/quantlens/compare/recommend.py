"""Which row to use: the quality each row is ranked on, its drop against float, the best
row within a :class:`~quantlens.compare.settings.Budget`, and the sentence that says so.

Example:
    >>> best(comparison.rows, Budget(max_accuracy_drop=1.0, objective="latency")).name
    'static'
    >>> points_change(-0.004), points_change(0.2222), points_change(-1.5)
    ('no change', '0.22 points higher', '1.50 points lower')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from quantlens.compare.settings import Budget

if TYPE_CHECKING:
    from quantlens.compare.results import Comparison, Row

DEFAULT_QUALITY_HEADER = "accuracy %"


def baseline(rows: Sequence[Row]) -> Row | None:
    """The float row measured in PyTorch, if it was measured."""
    return next((r for r in rows if _is_baseline(r) and r.ok), None)


def _is_baseline(row: Row) -> bool:
    return row.method == "float" and row.runtime == "torch"


def display_name(rows: Sequence[Row], row: Row) -> str:
    """``row``'s name in a sentence: with rows of several runtimes a PyTorch row says so
    (``"static (torch)"``; the others' names already do: ``"static (onnxruntime)"``)."""
    mixed = any(r.runtime != "torch" for r in rows)
    return f"{row.name} (torch)" if mixed and row.runtime == "torch" else row.name


def accuracy_drop(row: Row, base: Row | None) -> float | None:
    """Points of quality lost vs ``base`` (positive = worse), or None when unknown."""
    q = row.quality
    bq = base.quality if base else None
    return None if q is None or bq is None else bq - q


def perplexity_increase(row: Row, base: Row | None) -> float | None:
    """A causal LM's perplexity increase vs ``base`` in percent (positive = worse), or None."""
    p, bp = row.perplexity, base.perplexity if base else None
    return None if p is None or not bp else 100.0 * (p / bp - 1.0)


def is_language_model(rows: Sequence[Row]) -> bool:
    """Whether the rows are a causal LM's (the float row has a perplexity)."""
    base = baseline(rows)
    return base is not None and base.perplexity is not None


def _objective_key(objective: str, lm: bool = False) -> Callable[[Row], float | int | None]:
    if objective == "latency" and lm:
        return lambda r: -r.decode_tokens_per_s if r.decode_tokens_per_s else None
    if objective == "latency":
        return lambda r: r.latency_ms
    return lambda r: r.disk_bytes or r.memory_bytes


def _loss(row: Row, base: Row | None, lm: bool) -> float | None:
    return perplexity_increase(row, base) if lm else accuracy_drop(row, base)


def best(rows: Sequence[Row], budget: Budget) -> Row | None:
    """The row with the best ``budget.objective`` among those losing at most
    ``budget.max_accuracy_drop`` points of accuracy (or agreement) vs float: every row but
    the float one in PyTorch (so the float model in another runtime, too) and those whose
    method quantized no layer (Dynamic declines a model where int8 would only be slower:
    that row measures the float model); for a causal LM
    (:func:`is_language_model`), among those whose perplexity is at most
    ``budget.max_perplexity_increase`` percent above float, the one that decodes the most
    tokens/s (``"latency"``) or is smallest (``"size"``).

    Args:
        rows: the comparison's rows, float first.
        budget: the allowed drop and the objective.

    Returns:
        The row, or None when no method is within the budget (keep float).
    """
    lm = is_language_model(rows)
    base, key = baseline(rows), _objective_key(budget.objective, lm)
    limit = budget.max_perplexity_increase if lm else budget.max_accuracy_drop
    candidates = [
        r
        for r in rows
        if r.ok
        and not _is_baseline(r)
        and r.layers_quantized != 0  # (a method that left every layer float)
        and key(r) is not None
        and (drop := _loss(r, base, lm)) is not None
        and drop <= limit
    ]
    return min(candidates, key=key) if candidates else None  # type: ignore[arg-type, return-value]


def quality_names(rows: Sequence[Row], task: str | None = None) -> tuple[str, str]:
    """What :attr:`Row.quality` means for these rows: ``(axis label, table header)``, e.g.
    ``("accuracy (%)", "accuracy %")``, ``("similarity to float (%)", "similarity %")`` for
    embeddings (``task`` is ``"embedding"``: the "accuracy" is the cosine similarity of each
    embedding to the float model's), ``("metric", "metric")`` or
    ``("agreement with float (%)", "agreement % (no labels)")``. Without a measured row the
    header is ``"accuracy %"``."""
    ok = [r for r in rows if r.ok]
    if task == "embedding" and any(r.accuracy is not None for r in ok):
        return "similarity to float (%)", "similarity %"
    if any(r.accuracy is not None for r in ok):
        return "accuracy (%)", "accuracy %"
    if any(r.metric is not None for r in ok):
        return "metric", "metric"
    return "agreement with float (%)", "agreement % (no labels)" if ok else DEFAULT_QUALITY_HEADER


def points_change(delta: float) -> str:
    """A change in points for a sentence: ``"0.22 points higher"``, ``"0.50 points lower"``,
    or ``"no change"`` when it rounds to zero."""
    if abs(delta) < 0.005:
        return "no change"
    return f"{abs(delta):.2f} points {'higher' if delta > 0 else 'lower'}"


def size_change(base: int, value: int) -> str:
    """``"2.89× smaller"`` or ``"1.05× larger"``."""
    return f"{base / value:.2f}× smaller" if value <= base else f"{value / base:.2f}× larger"


def _drop(comparison: Comparison, row: Row) -> float:
    drop = comparison.accuracy_drop(row)
    return drop if drop is not None else 1e9


def _keep_float(comparison: Comparison, budget_text: str) -> str:
    ok = [r for r in comparison.rows if r.ok and r.method != "float"]
    tried = [r for r in ok if r.layers_quantized != 0]
    declined = [display_name(comparison.rows, r) for r in ok if r.layers_quantized == 0]
    if declined and not tried:
        return (
            f"Keep the float model: {', '.join(declined)} left every layer float, since int8 "
            "would be slower than float there (see the row's notes)."
        )
    if not tried:
        return "No quantization method succeeded; see the errors in the table."
    closest = min(tried, key=lambda r: _drop(comparison, r))
    name = display_name(comparison.rows, closest)
    return (
        f"Keep the float model: no method stays within the {budget_text} accuracy budget "
        f"(closest: {name}, {points_change(-_drop(comparison, closest))}). "
        "Try QAT or a gentler config."
    )


def _not_faster(comparison: Comparison, base: Row, best_row: Row, budget_text: str) -> str:
    small = comparison.best(Budget(comparison.budget.max_accuracy_drop, "size"))
    threads = best_row.threads or "?"
    head = f"No method is faster than float here ({threads} thread(s))"
    if small is None or not base.disk_bytes or not small.disk_bytes:
        return f"{head}: keep the float model."
    return (
        f"{head}: keep the float model for speed. "
        f"To save space, {display_name(comparison.rows, small)} is "
        f"{base.disk_bytes / small.disk_bytes:.1f}× smaller on "
        f"disk within the {budget_text} accuracy budget ({_quality_name(comparison)}: "
        f"{points_change(-_drop(comparison, small))})."
    )


def _what(comparison: Comparison) -> str:
    """What the recommended row was chosen among: methods, or every row of every runtime."""
    mixed = any(r.runtime != "torch" for r in comparison.rows)
    return "of all rows (each model in each runtime)" if mixed else "method"


def _quality_name(comparison: Comparison) -> str:
    return quality_names(comparison.rows, comparison.task)[0].split(" (")[0]


def _lm_recommendation(comparison: Comparison, base: Row, best_row: Row | None) -> str:
    """:func:`recommendation` for a causal LM: the budget is a perplexity increase (%)."""
    budget = comparison.budget
    budget_text = f"{budget.max_perplexity_increase:g}% perplexity budget"

    def cost(row: Row) -> str:
        rise = comparison.perplexity_increase(row)
        return f"perplexity {row.perplexity:.2f} vs {base.perplexity:.2f} float ({rise:+.1f}%)"

    if best_row is None:
        tried = [r for r in comparison.rows if r.ok and r.method != "float" and r.perplexity]
        if not tried:
            return "No quantization method succeeded; see the errors in the table."
        closest = min(tried, key=lambda r: r.perplexity or math.inf)
        return (
            f"Keep the float model: no method stays within the {budget_text} "
            f"(closest: {closest.name}, {cost(closest)}). Try GPTQ or a larger group size."
        )
    speed, base_speed = best_row.decode_tokens_per_s, base.decode_tokens_per_s
    if budget.objective == "latency" and speed and base_speed and speed < base_speed:
        small = best(comparison.rows, dataclasses.replace(budget, objective="size"))
        head = f"No method decodes faster than float here ({best_row.threads or '?'} thread(s))"
        if small is None or not base.disk_bytes or not small.disk_bytes:
            return f"{head}: keep the float model."
        return (
            f"{head}: keep the float model for speed. To save space, {small.name} is "
            f"{size_change(base.disk_bytes, small.disk_bytes)} on disk within the "
            f"{budget_text} ({cost(small)})."
        )
    parts = []
    if base.disk_bytes and best_row.disk_bytes:
        parts.append(f"{size_change(base.disk_bytes, best_row.disk_bytes)} on disk")
    if speed and base_speed:
        parts.append(
            f"{speed / base_speed:.2f}× the decode tokens/s ({speed:.1f} vs {base_speed:.1f})"
        )
    goal = "fastest-decoding" if budget.objective == "latency" else "smallest"
    body = "; ".join(p for p in (", ".join(parts), cost(best_row)) if p)
    return f"Use {best_row.name}: {body}. It is the {goal} method within the {budget_text}."


def recommendation(comparison: Comparison) -> str:
    """One or two sentences: what to use and what it buys and costs.

    Args:
        comparison: the rows and the budget.

    Returns:
        The sentence(s), e.g. ``"Use static: 2.83× smaller on disk, 1.41× faster; ..."``.
    """
    base, best_row = comparison.baseline, comparison.recommended
    budget_text = f"{comparison.budget.max_accuracy_drop:g}-point"
    if not comparison.rows and comparison.interrupted:
        return "Interrupted before the first model was measured: nothing to recommend."
    if base is None:
        return "The float model could not be measured, so nothing can be recommended."
    if is_language_model(comparison.rows):
        return _lm_recommendation(comparison, base, best_row)
    if best_row is None:
        return _keep_float(comparison, budget_text)
    if (
        comparison.budget.objective == "latency"
        and base.latency_ms
        and best_row.latency_ms
        and best_row.latency_ms > base.latency_ms
    ):
        return _not_faster(comparison, base, best_row, budget_text)
    parts = []
    if base.disk_bytes and best_row.disk_bytes:
        parts.append(f"{size_change(base.disk_bytes, best_row.disk_bytes)} on disk")
    if base.latency_ms and best_row.latency_ms:
        ratio = base.latency_ms / best_row.latency_ms
        parts.append(f"{ratio:.2f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower")
    q, bq = best_row.quality, base.quality
    acc = (
        f"{_quality_name(comparison)} {q:.2f}% vs {bq:.2f}% float ({points_change(q - bq)})"
        if q is not None and bq is not None
        else ""
    )
    goal = "fastest" if comparison.budget.objective == "latency" else "smallest"
    body = "; ".join(p for p in (", ".join(parts), acc) if p)
    return (
        f"Use {display_name(comparison.rows, best_row)}: {body}. "
        f"It is the {goal} {_what(comparison)} within the {budget_text} accuracy budget."
    )


__all__ = [
    "accuracy_drop",
    "baseline",
    "best",
    "display_name",
    "is_language_model",
    "perplexity_increase",
    "points_change",
    "quality_names",
    "recommendation",
    "size_change",
]
