"""Choosing activation ranges by what they cost: Static's ``observer="auto"``.

Under ``"auto"`` every activation observer watches the calibration data with several range
estimators at once (:class:`quantlens.core.observers.AutoObserver`). After calibration, each
captured graph (the whole model, or each region of one whose forward cannot be captured
whole) is converted once per candidate and run on the first calibration batch, and the
candidate whose int8 output is closest to the float output (highest SQNR) is kept. (A
fake-quantized simulation is cheaper but ranked the candidates differently from the int8
kernels on MiniLM: 0.973 mean embedding cosine against 0.982 measured this way.) BERT-style encoders
need this: outlier channels make the MSE-optimal clipping of one tensor lose the few values
the next layers depend on, and which estimator wins differs from layer to layer.

A region whose converted int8 output is still below :data:`MIN_SQNR_DB` is left in float
(its observers removed) with the measured figure as the reason; :func:`record_choices`
names what was chosen in the quantization summary.

Example:
    >>> choice = choose(prepared, first_batch, convert=to_int8)
    >>> choice.observer, choice.scores
    ('entropy', {'mse': 24.9, 'entropy': 31.2, 'percentile': 30.8, 'minmax': 24.9})
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from quantlens.core import distributed
from quantlens.core.data import Batch
from quantlens.core.metrics import sqnr_db
from quantlens.methods.backends import torch_ao

if TYPE_CHECKING:
    from quantlens.methods.base import QuantContext

MIN_SQNR_DB = 12.0
"""Below this int8-vs-float output SQNR (noise a quarter of the signal) a graph stays float."""


@dataclass
class Choice:
    """What :func:`choose` measured for one graph.

    Attributes:
        observer: the candidate kept.
        scores: int8 output SQNR (dB) of each candidate.
        sqnr_db: the int8 output SQNR of the kept candidate.
        converted: the kept candidate's int8 graph (the caller's converted model).
    """

    observer: str
    scores: dict[str, float] = field(default_factory=dict)
    sqnr_db: float | None = None
    converted: nn.Module | None = field(default=None, repr=False)

    @property
    def keep_float(self) -> bool:
        return self.sqnr_db is not None and self.sqnr_db < MIN_SQNR_DB


def _auto_observers(model: nn.Module) -> list:
    return [
        m for m in model.modules() if isinstance(m, torch_ao.CoreObserver) and m.method == "auto"
    ]


def _tensors(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, dict):  # Hugging Face ModelOutput is one
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    return []


def _flat(output) -> torch.Tensor:
    """Every float tensor of a model output (a tensor, tuple, list, dict), flattened into one."""
    leaves = _tensors(output)
    return torch.cat([t.detach().float().reshape(-1) for t in leaves]) if leaves else torch.zeros(0)


def choose(
    prepared: nn.Module,
    batch: Batch,
    convert: Callable[[nn.Module], nn.Module],
    *,
    merge_ranks: bool = False,
) -> Choice | None:
    """Set every ``"auto"`` observer of ``prepared`` (calibrated) to the candidate whose
    int8 graph (``convert`` of a copy) gives the output closest to float on ``batch``; None
    when it has no such observer. Candidates giving the same ranges are run once.

    Args:
        prepared: an observed graph after calibration.
        batch: the inputs to measure on.
        convert: turns a copy of ``prepared`` into its int8 graph.
        merge_ranks: under ``torch.distributed``, score each candidate by its SQNR averaged
            over the ranks (each measures on its own batch), so that all keep the same one.

    Returns:
        The :class:`Choice` (observer kept, the SQNR of each candidate, the float output).
    """
    autos = _auto_observers(prepared)
    if not autos:
        return None
    for m in autos:
        m.observing = False
    scores: dict[str, float] = {}
    seen: dict[tuple, str] = {}
    best, best_graph = "", None
    try:
        with torch.no_grad(), torch_ao.quiet():
            ref = _flat(batch.run(prepared.eval()))
            for name in autos[0].observer.observers:
                for m in autos:
                    m.observer.choice = name
                key = tuple(tuple(float(v) for v in m.calculate_qparams()) for m in autos)
                if key in seen:
                    scores[name] = scores[seen[key]]
                    continue
                seen[key] = name
                graph = convert(copy.deepcopy(prepared))
                score = sqnr_db(ref, _flat(batch.run(graph)))
                scores[name] = -math.inf if math.isnan(score) else score
                if best_graph is None or scores[name] > scores[best]:
                    best, best_graph = name, graph
            if merge_ranks and distributed.is_distributed():
                local = best
                scores, best = _merged_scores(scores)
                if best != local:
                    for m in autos:
                        m.observer.choice = best
                    best_graph = convert(copy.deepcopy(prepared))
    finally:
        for m in autos:
            m.observing = True
            m.observer.choice = best or m.observer.choice
    return Choice(best, scores, scores[best], best_graph)


def _merged_scores(scores: dict[str, float]) -> tuple[dict[str, float], str]:
    """Every candidate's SQNR averaged over the ranks (-inf and NaN count as -1000 dB, inf as
    1000 dB) and the first best one: the same on every rank."""
    names = list(scores)
    local = torch.tensor([scores[n] for n in names], dtype=torch.float64).nan_to_num(
        -1e3, 1e3, -1e3
    )
    merged = distributed.all_reduce(local.clamp(-1e3, 1e3), "sum") / distributed.world_size()
    out = dict(zip(names, merged.tolist()))
    return out, names[int(merged.argmax())]  # argmax: the first maximum, as the local rule


def strip_observers(prepared: nn.Module) -> nn.Module:
    """``prepared`` without its activation observers: the float graph it was made from
    (Conv+BN already folded), for a graph left in float."""
    for name, module in list(prepared.named_modules()):
        if isinstance(module, torch_ao.CoreObserver) and name:
            parent_name, _, attr = name.rpartition(".")
            setattr(
                prepared.get_submodule(parent_name) if parent_name else prepared,
                attr,
                nn.Identity(),
            )
    return prepared


def float_reason(choice: Choice) -> str:
    """Why a graph whose best observer stays under :data:`MIN_SQNR_DB` is left float."""
    return (
        f"int8 output SQNR {choice.sqnr_db:.1f} dB on the first calibration batch (best observer: "
        f"{choice.observer}), below {MIN_SQNR_DB:g} dB; left float"
    )


def record_choices(ctx: QuantContext, choices: dict[str, Choice]) -> None:
    """Name the observer ``"auto"`` chose for each quantized layer and what it measured."""
    if not choices:
        return
    for record in ctx.summary.quantized:
        prefix = max(
            (p for p in choices if not p or record.name == p or record.name.startswith(f"{p}.")),
            key=len,
            default=None,
        )
        if prefix is not None and not choices[prefix].keep_float:
            got = choices[prefix]
            scores = ", ".join(f"{k} {v:.1f}" for k, v in got.scores.items())
            record.detail = (
                record.detail.replace("auto activations", f"{got.observer} activations")
                + f" (auto: int8 output SQNR in dB {scores})"
            )
    kept = [c.observer for c in choices.values() if not c.keep_float]
    counts = ", ".join(f"{name} x{kept.count(name)}" for name in dict.fromkeys(kept))
    floated = sum(c.keep_float for c in choices.values())
    ctx.summary.note(
        f"observer='auto' chose by the output SQNR it measured: {counts}"
        + (f"; {floated} graph(s) left float below {MIN_SQNR_DB:g} dB" if floated else "")
    )
