"""Automatic back-off: when an int8 model's output strays from float, leave the regions
that cost the most in float.

After converting, Static compares the int8 model's output with the float model's on the
example batch (the first calibration batch). Below
:data:`~quantlens.methods.int8_check.AGREEMENT_FLOOR` cosine, :func:`back_off`:

1. measures what each candidate region (a captured graph, see
   :mod:`quantlens.methods.int8_regions`) costs on its own: the output cosine with only that
   region int8 and every other candidate float;
2. puts them in float worst-first until the int8 model's cosine reaches the floor or
   :data:`MAX_FRACTION` of the regions are float, then keeps the shortest prefix of that
   order that gave the best cosine;
3. returns what it did, each region with the cosine before and after, for the summary.

Toggling measures a region's real contribution to the output (a region's own SQNR does not
say how much the layers after it amplify its error), and costs one forward per region plus
one per region tried in float. Ranking each region alone, rather than by putting one back
in float in the all-int8 model, finds the costly ones when the error is spread over many
regions: on the compatibility matrix's mobilenet-v2-hf, putting any single region back in
float raised the cosine by at most 0.07, so that ranking could not tell them apart.

Example:
    >>> done = back_off(model, {"block.3": float_block3}, example, reference)
    >>> done[0].reason()
    'left float: output cosine 0.53 -> 0.93 with it in float (agreement floor 0.9)'
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from quantlens.core.metrics import cosine_similarity
from quantlens.methods.base import QuantSummary
from quantlens.methods.int8_check import AGREEMENT_FLOOR, output_of
from quantlens.methods.int8_choice import strip_observers

MAX_FRACTION = 0.5
"""At most this share of the candidate regions (at least one) is left float."""

SAVED_KEY = "float_regions"
"""Where a converted model's example-input description (``quantlens_example_inputs``, which
checkpoints record) lists the regions left float, so that loading rebuilds them float."""


@dataclass(frozen=True)
class Fallback:
    """One region left float by :func:`back_off`.

    Attributes:
        name: the region's module name.
        cosine_before: the output cosine before it went float.
        cosine_after: the output cosine with it (and those before it) in float.
    """

    name: str
    cosine_before: float
    cosine_after: float

    def reason(self) -> str:
        """The summary reason of the region's layers."""
        return (
            f"left float: output cosine {self.cosine_before:.2f} -> {self.cosine_after:.2f} "
            f"with it in float (agreement floor {AGREEMENT_FLOOR})"
        )


def output_cosine(model: nn.Module, inputs, reference: torch.Tensor | None) -> float | None:
    """Cosine between ``model``'s output on ``inputs`` and ``reference``; None when it cannot
    be measured (no reference, a failing run, another shape, non-finite values)."""
    if reference is None or inputs is None or not torch.isfinite(reference).all():
        return None
    out = output_of(model, inputs)
    if out is None or out.shape != reference.shape:
        return None
    cosine = float(cosine_similarity(reference, out))
    return -1.0 if math.isnan(cosine) else cosine


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def back_off(
    model: nn.Module,
    candidates: dict[str, nn.Module],
    inputs,
    reference: torch.Tensor | None,
    *,
    floor: float = AGREEMENT_FLOOR,
    max_fraction: float = MAX_FRACTION,
) -> list[Fallback]:
    """Leave the regions that cost the most in float until the output agrees with float.

    Args:
        model: the converted int8 model (changed in place: floated regions are swapped in).
        candidates: ``{region name: its float module}`` (a module of the same interface as
            the int8 one at that name).
        inputs: the example inputs (positional tuple or a :class:`~quantlens.core.data.Batch`).
        reference: the float model's output on ``inputs``.
        floor: the cosine to reach.
        max_fraction: at most this share of ``candidates`` (at least one) goes float.

    Returns:
        The regions left float, in the order they went, with the cosine before and after.
    """
    base = output_cosine(model, inputs, reference)
    if base is None or base >= floor or not candidates:
        return []
    int8 = {name: model.get_submodule(name) for name in candidates}
    for name, module in candidates.items():
        _set(model, name, module)
    alone: dict[str, float] = {}  # the output cosine with only this region int8
    for name, module in candidates.items():
        _set(model, name, int8[name])
        got = output_cosine(model, inputs, reference)
        alone[name] = -1.0 if got is None else got
        _set(model, name, module)
    for name in candidates:
        _set(model, name, int8[name])
    limit = max(1, math.floor(max_fraction * len(candidates)))
    steps: list[Fallback] = []
    current = base
    for name in sorted(alone, key=alone.__getitem__)[:limit]:  # the costliest first
        _set(model, name, candidates[name])
        got = output_cosine(model, inputs, reference)
        steps.append(Fallback(name, current, -1.0 if got is None else got))
        current = steps[-1].cosine_after
        if current >= floor:
            break
    # keep the prefix that agrees best (errors of many regions can cancel out, so the
    # cosine does not rise at every step)
    keep = max(range(len(steps) + 1), key=lambda k: steps[k - 1].cosine_after if k else base)
    for step in steps[keep:]:
        _set(model, step.name, int8[step.name])
    return steps[:keep]


# --- regions of a Static model ---------------------------------------------------------------


def saved_float_regions(example_inputs) -> list[str]:
    """The regions a checkpoint records as left float (its example-input description)."""
    names = example_inputs.get(SAVED_KEY) if isinstance(example_inputs, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else []


def float_copies(
    model: nn.Module, regions: Sequence, choices: dict, wanted: Sequence[str] | None = None
) -> dict[str, nn.Module]:
    """A float copy (observers removed) of each observed region about to be converted to
    int8: all of them (``wanted`` None) or those named in ``wanted``; regions ``choices``
    already leaves float are left out."""
    return {
        r.name: strip_observers(copy.deepcopy(model.get_submodule(r.name)))
        for r in regions
        if (wanted is None or r.name in wanted)
        and not (r.name in choices and choices[r.name].keep_float)
    }


def _prefix(region) -> str:
    return region.name + (".module" if region.leaf else "")


def back_off_regions(
    model: nn.Module,
    regions: Sequence,
    floats: dict[str, nn.Module],
    plan,
    summary: QuantSummary,
    inputs,
    reference: torch.Tensor | None,
) -> list[str]:
    """:func:`back_off` over converted regions; the reasons go in ``plan`` (for the
    summary's layer records) and a note in ``summary``. Returns the regions left float."""
    done = back_off(model, floats, inputs, reference)
    by_name = {r.name: r for r in regions}
    for item in done:
        plan.reasons[_prefix(by_name[item.name])] = item.reason()
    if done:
        summary.note(
            f"auto_fallback: left {len(done)} of {len(floats)} region(s) in float, the output "
            f"cosine on the first calibration batch going from {done[0].cosine_before:.3f} to "
            f"{done[-1].cosine_after:.3f} (floor {AGREEMENT_FLOOR}; "
            "Static(auto_fallback=False) keeps them int8)"
        )
    return [item.name for item in done]


def restore(model: nn.Module, regions: Sequence, floats: dict[str, nn.Module], plan) -> list[str]:
    """Put the float copies in place of their converted regions (a checkpoint's rebuild of
    the regions it records as float). Returns their names."""
    for region in regions:
        if region.name in floats:
            _set(model, region.name, floats[region.name])
            plan.reasons[_prefix(region)] = "left float when quantized (recorded in the checkpoint)"
    return list(floats)
