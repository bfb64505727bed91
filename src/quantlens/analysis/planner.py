"""Mixed-precision planning: choose each layer's bit width (or float) from measurements.

1. *Measure*: for every candidate bit width ``b`` and every layer ``L``, the loss with only
   ``L`` quantized at ``b`` (:mod:`~quantlens.analysis.sensitivity`; the float model runs
   once) and the bytes ``L`` takes at ``b`` (a :class:`~quantlens.analysis.plan_search.LayerTable`,
   reusable for another budget with ``table=``).
2. *Greedy*: start with every layer at its most precise candidate; repeatedly take the move
   (one layer down to a less precise candidate) with the least predicted loss per byte
   saved, until every layer sits at its least precise candidate. This orders all moves.
3. *Choose and verify*: under an accuracy budget, the longest prefix of moves whose
   *measured* loss stays within it (probing the prediction first, then bisecting on
   measurements, since layer errors do not add exactly); under a size budget
   (``target_size``), the shortest prefix whose measured size fits, then the bytes left
   under the target spent raising the layers that win back most loss per byte.
4. *Finish by measurement*: a prefix can stop at a move that breaks the budget while later,
   cheaper moves would still fit (a float layer that costs nothing at 8 bits). Under an
   accuracy budget the planner tries every single move that saves bytes (float -> 8, 8 -> 4,
   ...), most promising first, takes the first whose measured loss stays within the budget,
   and repeats until a whole round is refused (``plan.complete``) or ``polish``
   measurements are spent. Under a size budget it tries the single moves that add
   precision within the target and takes those that measurably lower the loss.

Layers whose quantized variants leave the outputs bit-identical to float (a pooler under a
mean-pooled embedding) do not reach the metric: they are listed in ``plan.unused`` and put
at the least precise width, a saving that is free for this metric only.

The result is an ordinary config: the method at the most common bit width, ``overrides``
for the layers at other widths and ``skip`` for those left in float, so ``ql.quantize``
applies it and ``ql.save`` stores it.

Example:
    >>> plan = search_plan(model, (x, y), max_accuracy_drop=0.5, method=ql.WeightOnly(bits=8))
    >>> print(plan)                           # per-layer bits, predicted and measured drop, size
    >>> qm = ql.quantize(model, plan.config)
    >>> smaller = search_plan(model, (x, y), max_accuracy_drop=1.0, method=..., table=plan.table)
"""

from __future__ import annotations

import copy
import math

from torch import nn

from quantlens.analysis.plan_results import LayerChoice, MixedPrecisionPlan, UniformPoint
from quantlens.analysis.plan_search import (
    LayerTable,
    Search,
    build_config,
    candidate_configs,
    fill_slack,
    greedy_moves,
    single_moves,
    state_after,
)
from quantlens.analysis.scoring import Evaluator, Score
from quantlens.analysis.sensitivity import Variants, warn_small
from quantlens.api import quantize
from quantlens.core.data import first_batch
from quantlens.core.distributed import is_distributed, local_only
from quantlens.core.progress import track
from quantlens.core.spread import spread
from quantlens.errors import ConfigError, InputError
from quantlens.eval.size import memory_bytes
from quantlens.methods.base import QuantConfig

__all__ = [
    "LayerChoice",
    "LayerTable",
    "MixedPrecisionPlan",
    "UniformPoint",
    "plan_mixed_precision",
    "search_plan",
]

DEFAULT_MIN_SQNR_DB = 30.0
DEFAULT_MAX_PPL_INCREASE = 5.0  # percent, as ql.compare's budget for a causal LM
MAX_MEASUREMENTS = 8  # bisection measurements of step 3
DEFAULT_POLISH = 64  # measurements step 4 may spend


# --- measuring ------------------------------------------------------------------------------


def _measure_table(
    model, variants, ev: Evaluator, levels, names, records, fbytes, progress
) -> LayerTable:
    loss = {n: [0.0] * len(levels) for n in names}
    size = {n: [fbytes[n]] * len(levels) for n in names}
    same = {n: True for n in names}
    jobs = [
        (n, j) for n in names for j, b in enumerate(levels) if b is not None and n in records[b]
    ]
    work = copy.deepcopy(model) if any(v.strategy == "swap" for v in variants.values()) else None

    def one(job: tuple[str, int]) -> tuple[float, bool]:
        n, j = job
        v = variants[levels[j]]
        with local_only():
            if v.strategy == "swap":
                with v.swapped(work, n, v.full) as variant:
                    score = ev.measure(variant)
            else:
                score = ev.measure(v.only({n}))
        return score.loss, score.identical

    # under a process group each rank measures every world_size-th pass (core.spread)
    scores = (
        spread(jobs, one, what="measuring the planner's layer passes")
        if is_distributed()
        else [one(job) for job in track(jobs, "measuring layers", enabled=progress)]
    )
    for (n, j), (pass_loss, identical) in zip(jobs, scores):
        size[n][j] = records[levels[j]][n].bytes_after
        loss[n][j] = pass_loss
        same[n] = same[n] and identical
    return LayerTable(list(levels), loss, size, [n for n in names if same[n]])


# --- the entry points ------------------------------------------------------------------------


def search_plan(
    model: nn.Module,
    data,
    *,
    candidates=(8, 4, 2, None),
    max_accuracy_drop: float = 1.0,
    min_sqnr_db: float | None = None,
    max_ppl_increase: float | None = None,
    target_size: int | None = None,
    method: QuantConfig | None = None,
    metric=None,
    max_batches: int | None = None,
    calib_data=None,
    compare_uniform: bool = True,
    polish: int = DEFAULT_POLISH,
    table: LayerTable | None = None,
    evaluator: Evaluator | None = None,
    progress: bool | None = None,
) -> MixedPrecisionPlan:
    """Plan per-layer precision and verify it by measuring (see the module docstring).

    Args:
        model: the float model (left unchanged).
        data: evaluation data (labels give an accuracy budget; else output SQNR/cosine).
        candidates: bit widths to choose from per layer; None = keep the layer in float.
        max_accuracy_drop: the budget, in points of the metric (accuracy or cosine %).
        min_sqnr_db: the budget when the metric is SQNR (default 30 dB).
        max_ppl_increase: the budget when the metric is perplexity (a causal LM on a token
            stream): percent above the float perplexity (default 5, as ``ql.compare``'s).
        target_size: instead of an accuracy budget, a size budget in bytes of the whole
            model (weights and buffers in memory): the plan with the best accuracy that fits.
        method: the method config whose bit width varies; its other settings (group size,
            skip, ...) are kept. Default: the weight-only presets (8-bit per-channel, 4-bit
            in groups of 32, 2-bit in groups of 16). A method without a bit width (Static)
            plans which layers to keep in float.
        metric: see :mod:`quantlens.analysis.scoring`.
        max_batches: measure on the first ``max_batches`` batches (a subset).
        calib_data: calibration data for methods that calibrate (default: ``data``).
        compare_uniform: also measure every uniform bit width, for comparison.
        polish: measurements the finishing pass (step 4) may spend; 0 skips it.
        table: per-layer measurements of an earlier plan with the same model, data, method
            and candidates (``plan.table``): skips step 1.
        evaluator: a ready :class:`~quantlens.analysis.scoring.Evaluator` (cached float outputs).
        progress: show a progress bar.

    Returns:
        A :class:`MixedPrecisionPlan` (``.config`` is what :func:`plan_mixed_precision` returns).

    Raises:
        ConfigError: bad candidates, a ``target_size`` below the smallest reachable size, or
            a ``table`` measured for other candidates or layers.
    """
    configs = candidate_configs(method, candidates)
    method = method or next(c for c in configs.values() if c is not None)
    levels = list(configs)
    batch = first_batch(data)
    with local_only():  # every rank alone; only the layer passes are spread over ranks
        ev = evaluator or Evaluator(model, data, metric=metric, max_batches=max_batches)
        warn_small(ev.samples, "the mixed-precision plan")
        calib = calib_data if calib_data is not None else ev.calibration()
        variants = {
            b: Variants(
                model, cfg, calib_data=calib, calib_batches=max_batches, example_batch=batch
            )
            for b, cfg in configs.items()
            if cfg is not None
        }
    first = next(iter(variants.values()))
    names = list(dict.fromkeys(n for v in variants.values() for n in v.names))
    records = {b: {r.name: r for r in v.records} for b, v in variants.items()}
    float_bytes = memory_bytes(model)[0]
    modules = dict(model.named_modules())
    fbytes = {n: next(r[n].bytes_before for r in records.values() if n in r) for n in names}
    if table is None:
        table = _measure_table(model, variants, ev, levels, names, records, fbytes, progress)
    else:
        table.check(levels, names)
    with local_only():  # the search measures whole plans, the same on every rank
        loss, size = table.loss, table.size
        unused = set(
            table.identical
        )  # measured loss 0 at every width: the greedy order lowers them first

        def predicted_bytes(state) -> int:
            return float_bytes - sum(fbytes[n] - size[n][state[n]] for n in names)

        moves = greedy_moves(table)
        state = {n: 0 for n in names}
        loss_after, bytes_after = (
            [0.0],
            [predicted_bytes(state)],
        )  # running totals after each prefix of moves
        for n, j in moves:
            loss_after.append(loss_after[-1] + loss[n][j] - loss[n][state[n]])
            bytes_after.append(bytes_after[-1] + size[n][j] - size[n][state[n]])
            state[n] = j

        def groups(name: str) -> list[str]:
            return first.groups.get(name, [name])

        measured: dict[tuple, tuple[Score, int, QuantConfig]] = {}

        def measure_state(state: dict[str, int]):
            key = tuple(state[n] for n in names)
            if key not in measured:
                cfg = build_config(method, levels, configs, state, groups)
                if all(levels[j] is None for j in state.values()):
                    measured[key] = (Score(ev.baseline, 0.0, True), float_bytes, cfg)
                else:
                    qm = quantize(
                        model, cfg, calib_data=calib, calib_batches=max_batches, progress=False
                    )
                    measured[key] = (ev.measure(qm), memory_bytes(qm)[0], cfg)
            return measured[key]

        def measure(k: int):
            return measure_state(state_after(moves, k, names))

        n_moves = len(moves)
        search = Search(budget=max(0, polish))
        if target_size is not None:
            smallest = bytes_after[n_moves]
            if target_size < smallest:
                raise ConfigError(
                    f"target_size {target_size:,} bytes is below the smallest size these "
                    f"candidates reach (about {smallest:,} bytes); raise it or add lower bit "
                    "widths"
                )
            k = next(i for i in range(n_moves + 1) if bytes_after[i] <= target_size)
            while measure(k)[1] > target_size and k < n_moves:
                k += 1
            budget = {"target_size": int(target_size)}
            final = state_after(moves, k, names)
            refined = fill_slack(final, table, target_size - measure(k)[1])
            if refined != final:
                r_score, r_bytes, _ = measure_state(refined)
                if r_bytes <= target_size and r_score.loss <= measure(k)[0].loss:
                    final = refined

            def fits_better(trial, current) -> bool:
                score, nbytes, _ = measure_state(trial)
                return nbytes <= target_size and score.loss < measure_state(current)[0].loss

            if measure_state(final)[1] <= target_size:
                final = search.run(
                    final,
                    lambda s: [
                        t
                        for t in single_moves(s, table, cheaper=False)
                        if predicted_bytes(t) <= target_size
                    ],
                    fits_better,
                )
            ok = measure_state(final)[1] <= target_size
        else:
            if ev.metric.noise:
                db = DEFAULT_MIN_SQNR_DB if min_sqnr_db is None else min_sqnr_db
                limit, budget = ev.metric.loss(math.inf, db), {"min_sqnr_db": db}
            elif ev.metric.relative:
                pct = DEFAULT_MAX_PPL_INCREASE if max_ppl_increase is None else max_ppl_increase
                if pct < 0:
                    raise InputError(f"max_ppl_increase must be >= 0, got {pct}")
                limit, budget = float(pct), {"max_ppl_increase": float(pct)}
            else:
                if max_accuracy_drop < 0:
                    raise InputError(f"max_accuracy_drop must be >= 0, got {max_accuracy_drop}")
                limit, budget = float(max_accuracy_drop), {"max_drop": float(max_accuracy_drop)}
            within = lambda i: measure(i)[0].loss <= limit + 1e-9
            guess = max(i for i in range(n_moves + 1) if loss_after[i] <= limit)
            lo, hi = 0, n_moves + 1  # lo: known within budget; hi: known over it
            if within(guess):
                lo = guess
                if guess < n_moves and not within(guess + 1):
                    hi = guess + 1
            else:
                hi = guess
            while hi - lo > 1 and len(measured) < MAX_MEASUREMENTS:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if within(mid) else (lo, mid)
            final, ok = state_after(moves, lo, names), within(lo)
            if ok:
                final = search.run(
                    final,
                    lambda s: single_moves(s, table, cheaper=True),
                    lambda trial, _: measure_state(trial)[0].loss <= limit + 1e-9,
                )
        score, nbytes, cfg = measure_state(final)
        layers = [
            LayerChoice(
                n,
                _kind(records, n),
                _params(modules, n),
                levels[final[n]],
                size[n][final[n]],
                loss[n][final[n]],
            )
            for n in names
        ]
        predicted = sum(loss[n][final[n]] for n in names)
        plan = MixedPrecisionPlan(
            cfg,
            layers,
            ev.metric.name,
            ev.metric.unit,
            ev.metric.loss_unit,
            ev.baseline,
            budget,
            predicted,
            score.value,
            score.loss,
            nbytes,
            float_bytes,
            ok,
            measurements=len(measured),
            samples=ev.samples,
            table=table,
            final_moves=[(n, levels[a], levels[b]) for n, a, b in search.taken],
            complete=search.complete,
            unused=[n for n in names if n in unused],
        )
        if compare_uniform:
            for b, v in variants.items():
                s = ev.measure(v.full)
                plan.uniform.append(UniformPoint(b, memory_bytes(v.full)[0], s.value, s.loss))
        return plan


def _kind(records: dict, name: str) -> str:
    return next((r[name].kind for r in records.values() if name in r), "")


def _params(modules: dict, name: str) -> int:
    module = modules.get(name)
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def plan_mixed_precision(model: nn.Module, data, **kwargs) -> QuantConfig:
    """Choose bits per layer (None = float) and return the plan as a config.

    Minimises size subject to ``max_accuracy_drop`` (or maximises accuracy under
    ``target_size``), verified by measuring; the arguments are those of
    :func:`search_plan`, which also returns the measurements.

    Returns:
        A config with ``overrides`` (and ``skip`` for float layers) that ``ql.quantize``
        applies and ``ql.save`` stores.

    Example:
        >>> cfg = plan_mixed_precision(
        ...     model, (x, y), candidates=(8, 4, 2, None), max_accuracy_drop=0.5
        ... )
        >>> qm = ql.quantize(model, cfg)
    """
    return search_plan(model, data, **kwargs).config
