"""The comparison run: float plus every config, measured the same way, one row each.

:func:`run_comparison` is the engine behind ``ql.compare`` and ``quantlens compare``. For
the float model and then each config it quantizes (QAT configs are prepared, trained on
``train_data`` and converted) and measures the row (:mod:`quantlens.compare.measure`);
with ``Measure(runtimes=("torch", "onnxruntime"))`` each measured model is also exported and
measured in ONNX Runtime, a row right after its PyTorch row (:mod:`quantlens.compare.runtimes`).
A method that fails becomes a row with its error; the others still run. Ctrl-C stops the run
and returns the rows measured so far (``interrupted=True``).

Under a process group (``torchrun``) the models are spread over the ranks round-robin
(float on rank 0, config ``i`` on rank ``i % world_size``); each rank quantizes, calibrates
and measures its own share alone (:func:`quantlens.core.distributed.local_only`), the rows
are gathered in the original order, and every rank returns the same full Comparison (the
caller reports it on rank 0). Ranks sharing a machine are pinned to separate cores while
they measure (:func:`quantlens.core.spread.pinned_cores`); ``settings.processes`` says so.
A rank that fails stops the others with one :class:`~quantlens.errors.DistributedError`.
``on_start`` / ``on_row`` hooks see the rows of their own rank only.

Example:
    >>> comparison = run_comparison(model, {"static": ql.Static()}, DataSettings(test),
    ...                             timing=Timing(reps=5), measure=Measure(memory=False))
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from quantlens.compare import lm as _lm
from quantlens.compare.measure import (
    Yardstick,
    error_text,
    keep_warnings,
    measure_row,
    quantize_one,
    reference_outputs,
    summary_counts,
)
from quantlens.compare.results import Comparison, Row, RunInfo
from quantlens.compare.runtimes import require_runtimes, runtime_row, runtime_versions
from quantlens.compare.settings import DataSettings, Hooks, Measure, Timing, settings_from
from quantlens.core import distributed
from quantlens.core.data import Batch, first_batch, is_one_shot
from quantlens.core.spread import gather_outcomes, my_share, pinned_cores
from quantlens.errors import InputError, SlowerThanFloatError
from quantlens.eval import latency as _latency
from quantlens.eval.interrupts import InterruptWatch, interrupted_by
from quantlens.methods.base import QuantConfig

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from quantlens.compare.settings import CompareOptions
    from quantlens.eval.memory import ModelRef

log = logging.getLogger(__name__)


def environment() -> dict:
    """The machine and library versions the numbers were measured with (``quantlens
    doctor``'s data)."""
    from quantlens.eval.environment import environment_info

    return environment_info(check_engines=True)


def _check(model: nn.Module, configs: Mapping[str, Any], data: DataSettings) -> None:
    """Fail before any row: a model that is no module, bad calibration or training data (bad,
    empty or NaN data fails now, not as a failed row later), a method that is no config."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    for what, extra in (("calib_data", data.calib_data), ("train_data", data.train_data)):
        if extra is not None and not is_one_shot(extra, what):
            first_batch(extra, what)
    for name, cfg in configs.items():
        if not isinstance(cfg, QuantConfig) and getattr(cfg, "quantlens_config", None) is None:
            raise InputError(
                f"method {name!r} maps to a {type(cfg).__name__}; give a config such as "
                "ql.Dynamic() or a model returned by ql.quantize / ql.load"
            )


def _run_info(data: DataSettings, timing: Timing, measure: Measure, ys: Yardstick) -> RunInfo:
    reference = ys.reference
    return RunInfo(
        reps=timing.reps,
        warmup=timing.warmup,
        threads=timing.threads or torch.get_num_threads(),
        batch_size=ys.batch.size,
        qat_epochs=data.qat_epochs,
        memory=measure.memory,
        task=(
            "embedding"
            if reference.kind == "embedding"
            else ("classification" if reference.labels is not None else "outputs")
        ),
        samples=int(reference.values.shape[0]),
        runtimes=list(measure.runtimes) if len(measure.runtimes) > 1 else None,
    )


@dataclass
class _Run:
    """One run's state: the model, its configs, and the comparison the rows go into."""

    model: nn.Module
    configs: Mapping[str, Any]
    data: DataSettings  # as the methods get it: calib_data and example_inputs filled in
    ys: Yardstick | _lm.LMYardstick
    hooks: Hooks
    comparison: Comparison
    runtimes: tuple[str, ...] = ("torch",)
    started: int = 0  # rows announced to hooks.on_start
    current: int = 0  # the model being measured: 0 float, i the i-th config
    measured: list[int] = field(default_factory=list)  # per row here: its model's index

    def measure(self, row: Row, model: nn.Module, ref: ModelRef | None = None) -> Row:
        """Fill ``row`` the way this run's task measures (a causal LM or any other model)."""
        if isinstance(self.ys, _lm.LMYardstick):
            return _lm.measure_lm_row(row, model, self.ys)
        return measure_row(row, model, self.ys, ref)

    def finish(self, row: Row) -> None:
        self.comparison.rows.append(row)
        self.measured.append(self.current)
        if self.hooks.on_row is not None:
            self.hooks.on_row(row, self.comparison)

    def runtime_rows(self, row: Row, model: nn.Module | None, watch: InterruptWatch) -> None:
        """After a measured PyTorch row, its model's row in each other runtime."""
        if model is None or not row.ok:
            return
        for runtime in self.runtimes[1:]:
            if watch.requested:
                raise KeyboardInterrupt
            self.start(f"{row.name} ({runtime})")
            self.finish(runtime_row(row, model, self.ys, runtime))  # type: ignore[arg-type]

    def start(self, name: str) -> None:
        """Announce the next row to ``hooks.on_start`` (``(name, index, total)``)."""
        self.started += 1
        if self.hooks.on_start:
            total = (len(self.configs) + 1) * len(self.runtimes)
            self.hooks.on_start(name, self.started, total)

    def method_row(self, row: Row, cfg: Any) -> nn.Module:
        """Fill ``row`` for one config (or a model already quantized by quantlens); returns
        the model measured."""
        given = None if isinstance(cfg, QuantConfig) else cfg
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                qm = (
                    given
                    if given is not None
                    else quantize_one(
                        self.model, cfg, self.data, progress=self.hooks.progress, notes=row.notes
                    )
                )
            except SlowerThanFloatError as exc:  # the method keeps it float: measure that
                qm, row.layers_quantized = self.model, 0
                row.notes.append(f"{exc}; this row measures the float model")
        row.quantize_s = None if given is not None else time.perf_counter() - start
        summary_counts(row, self.model, qm)
        keep_warnings(row, caught)
        self.measure(row, qm)
        if self.hooks.on_model is not None:
            self.hooks.on_model(row, qm, self.ys.batch)
        return qm

    def measure_model(self, index: int, float_ref: ModelRef | None, watch: InterruptWatch) -> None:
        """Measure model ``index`` (0 float, ``i`` the ``i``-th config) and its rows in the
        other runtimes."""
        self.current = index
        if index == 0:
            self.start("float")
            float_row = self.measure(Row("float", "float"), self.model, float_ref)
            self.finish(float_row)
            if watch.requested:
                raise KeyboardInterrupt
            self.runtime_rows(float_row, self.model, watch)
            return
        name, cfg = list(self.configs.items())[index - 1]
        self.start(name)
        config = cfg if isinstance(cfg, QuantConfig) else cfg.quantlens_config
        row, qm = Row(name, config.method, config.to_dict()), None
        try:
            qm = self.method_row(row, cfg)
        except Exception as exc:
            if watch.requested or interrupted_by(exc):  # wrapped or swallowed
                raise KeyboardInterrupt from exc
            log.debug("method %s failed", name, exc_info=True)
            row.status, row.error = "failed", error_text(exc)
        self.finish(row)
        if watch.requested:  # swallowed in a row that still finished: stop after it
            raise KeyboardInterrupt
        self.runtime_rows(row, qm, watch)

    def rows(self, float_ref: ModelRef | None, indices: list[int] | None = None) -> None:
        """Measure float and each config (or only models ``indices``, 0 being float) into
        the comparison; a Ctrl-C (or an error wrapping one) ends the run with
        ``comparison.interrupted``."""
        total = len(self.configs) + 1
        with InterruptWatch() as watch:
            try:
                for index in range(total) if indices is None else indices:
                    self.measure_model(index, float_ref, watch)
            except (Exception, KeyboardInterrupt) as exc:  # a Ctrl-C, or an error wrapping one
                if not (watch.requested or interrupted_by(exc)):
                    raise
                self.comparison.interrupted = True
                log.warning(
                    "interrupted: keeping the %d row(s) measured so far", len(self.comparison.rows)
                )

    def rows_of_all_ranks(self, float_ref: ModelRef | None) -> None:
        """Under a process group: measure this rank's share, then put every rank's rows, in
        the order of the configs, into this rank's comparison (interrupted if any rank was).
        A rank whose run raised re-raises its error; the others raise one DistributedError."""
        error: Exception | None = None
        try:
            share = my_share(len(self.configs) + 1)
            with distributed.local_only():  # each row quantized and calibrated by one rank
                self.rows(float_ref, share)
        except Exception as exc:  # noqa: BLE001 - re-raised by gather_outcomes
            error = exc
        parts = gather_outcomes(
            (list(zip(self.measured, self.comparison.rows)), self.comparison.interrupted),
            error,
            what="measuring compare rows",
        )
        rows = sorted((pair for part, _ in parts for pair in part), key=lambda pair: pair[0])
        self.comparison.rows = [row for _, row in rows]
        self.comparison.interrupted = any(stopped for _, stopped in parts)


def _lm_run_info(
    data: DataSettings, timing: Timing, measure: Measure, ys: _lm.LMYardstick
) -> RunInfo:
    return RunInfo(
        reps=measure.generation_reps,
        warmup=1,
        threads=timing.threads or torch.get_num_threads(),
        batch_size=1,
        memory=measure.memory,
        task="causal-lm",
        samples=int(ys.stream.shape[1]),
        ppl_window=measure.ppl_window,
        ppl_stride=measure.ppl_stride or measure.ppl_window,
        prompt_tokens=int(ys.prompt.shape[1]),
        new_tokens=measure.new_tokens,
        float_note=data.float_note,
    )


def _run_lm(
    model: nn.Module,
    configs: Mapping[str, Any],
    data: DataSettings,
    timing: Timing,
    measure: Measure,
    hooks: Hooks,
) -> Comparison:
    """:func:`run` for a causal LM on one token stream (:mod:`quantlens.compare.lm`)."""
    environment_now = environment()
    with tempfile.TemporaryDirectory(prefix="quantlens-compare-") as tmp:
        ys = _lm.lm_yardstick(data.data, measure, timing, Path(tmp))
        info = _lm_run_info(data, timing, measure, ys)
        calib = data.calib_data
        if calib is None and configs:
            calib = data.data
            info.calibration = "on the evaluation data (no calib_data given)"
        quantizing = replace(
            data,
            calib_data=None
            if calib is None
            else _lm.calibration_windows(calib, measure.ppl_window),
            example_inputs=data.example_inputs or (ys.prompt,),
        )
        comparison = Comparison([], environment_now, hooks.command, info)
        _Run(model, configs, quantizing, ys, hooks, comparison).rows(None)
    return comparison


def run(
    model: nn.Module,
    configs: Mapping[str, Any],
    data: DataSettings,
    timing: Timing,
    measure: Measure,
    hooks: Hooks,
) -> Comparison:
    """:func:`run_comparison` with every setting given as its object."""
    _check(model, configs, data)
    require_runtimes(measure.runtimes)
    model.eval()
    if _lm.is_causal_lm(model, data.data, measure):
        if len(measure.runtimes) > 1:
            raise InputError(
                "a causal LM is measured in PyTorch only (perplexity and generation); "
                "leave out runtimes"
            )
        return _run_lm(model, configs, data, timing, measure, hooks)
    bench = (
        _latency.as_batch(data.example_inputs)
        if data.example_inputs is not None
        else first_batch(data.data)
    )
    bench = Batch(bench.args, bench.kwargs)
    example = tuple(a[:2] for a in bench.args) if bench.args and not bench.kwargs else None
    environment_now = {**environment(), **runtime_versions(measure.runtimes)}
    reference = reference_outputs(model, data.data)
    quantizing = replace(data, example_inputs=example)
    with tempfile.TemporaryDirectory(prefix="quantlens-compare-") as tmp:
        ys = Yardstick(
            reference,
            data.data,
            bench,
            measure.metric,
            timing,
            measure.memory,
            hooks.progress,
            Path(tmp),
        )
        info = _run_info(data, timing, measure, ys)
        info.float_note = data.float_note
        if data.calib_data is None and configs:
            quantizing = replace(quantizing, calib_data=data.data)
            info.calibration = "on the evaluation data (no calib_data given)"
        comparison = Comparison([], environment_now, hooks.command, info)
        job = _Run(model, configs, quantizing, ys, hooks, comparison, measure.runtimes)
        with pinned_cores() as how:  # several ranks on one machine: each on its own cores
            if how is None:
                job.rows(measure.float_ref)
            else:
                info.processes = how
                info.threads = timing.threads or torch.get_num_threads()
                job.rows_of_all_ranks(measure.float_ref)
    return comparison


def run_comparison(
    model: nn.Module,
    configs: Mapping[str, Any],
    data: Any = None,
    *,
    timing: Timing | None = None,
    measure: Measure | None = None,
    hooks: Hooks | None = None,
    **options: Unpack[CompareOptions],
) -> Comparison:
    """Measure the float model and every config on the same data (see the module docstring).

    Args:
        model: the float model (left untouched).
        configs: ``{row name: config}``; a value may also be a model already quantized by
            quantlens (``ql.quantize`` / ``ql.load``), measured as it is.
        data: the evaluation data (any form ``iter_batches`` accepts; its first batch is
            timed), or a :class:`~quantlens.compare.settings.DataSettings`.
        timing, measure, hooks: the settings objects (:mod:`quantlens.compare.settings`).
        options: their fields as flat keywords instead (``calib_data=``, ``reps=``,
            ``memory=``, ``on_row=``, ...; :class:`~quantlens.compare.settings.CompareOptions`).

    Returns:
        A :class:`~quantlens.compare.results.Comparison`; its first row is ``"float"``.
        Under a process group, every rank returns the same full Comparison.

    Example:
        >>> run_comparison(model, {"w8": ql.WeightOnly(bits=8)}, data=test, reps=5).rows[1].ok
        True
    """
    given = {"timing": timing, "measure": measure, "hooks": hooks}
    settings = settings_from(data, given, dict(options), "run_comparison")
    return run(model, configs, *settings)


__all__ = ["environment", "run", "run_comparison"]
