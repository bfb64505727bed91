"""The comparison run: float plus every config, measured the same way, one row each.

:func:`run_comparison` is the engine behind ``ql.compare`` and ``quantlens compare``. For
the float model and then each config it quantizes (QAT configs are prepared, trained on
``train_data`` and converted), then measures size (:mod:`.size`), latency (:mod:`.latency`),
peak memory in a child process (:mod:`.memory`) and quality against the float outputs
(:mod:`.quality`). A method that fails becomes a row with its error; the others still run.
Ctrl-C stops the run and returns the rows measured so far (``interrupted=True``).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from quantlens import api
from quantlens.core.data import Batch, first_batch, is_one_shot
from quantlens.errors import InputError, QuantlensError, check_number
from quantlens.eval import latency as _latency
from quantlens.eval import memory as _memory
from quantlens.eval import quality as _quality
from quantlens.eval import size as _size
from quantlens.eval.coverage import float_layers
from quantlens.eval.interrupts import InterruptWatch, interrupted_by, raise_if_interrupted
from quantlens.methods.base import QuantConfig, get_method, methods

log = logging.getLogger(__name__)
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


@dataclass
class Row:
    """The measurements of one model (the float baseline or one method).

    Sizes are bytes, times milliseconds, accuracy/agreement percent. ``None`` means not
    measured (the reason is in ``notes`` or ``error``). ``peak_memory_bytes`` is the peak
    resident memory of inference above the loaded model, ``model_memory_bytes`` the resident
    memory of the loaded model (both from a child process, see :mod:`quantlens.eval.memory`).
    """

    name: str
    method: str
    config: dict | None = None
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None
    disk_bytes: int | None = None
    memory_bytes: int | None = None
    num_parameters: int | None = None
    latency_ms: float | None = None
    latency_p95_ms: float | None = None
    items_per_s: float | None = None
    batch_size: int | None = None
    threads: int | None = None
    peak_memory_bytes: int | None = None
    model_memory_bytes: int | None = None
    accuracy: float | None = None
    metric: float | None = None
    agreement: float | None = None
    sqnr_db: float | None = None
    cosine: float | None = None
    quantize_s: float | None = None
    layers_quantized: int | None = None
    layers_float: int | None = None
    float_kinds: dict[str, int] | None = None  # layer kind -> how many stayed float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Row:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Comparison:
    """Rows of one comparison run plus how they were produced."""

    rows: list[Row]
    environment: dict
    command: str | None = None
    settings: dict = field(default_factory=dict)
    interrupted: bool = False

    def to_dict(self) -> dict:
        return {
            "rows": [r.to_dict() for r in self.rows],
            "environment": self.environment,
            "command": self.command,
            "settings": self.settings,
            "interrupted": self.interrupted,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Comparison:
        return cls(
            [Row.from_dict(r) for r in data.get("rows", [])],
            dict(data.get("environment", {})),
            data.get("command"),
            dict(data.get("settings", {})),
            bool(data.get("interrupted", False)),
        )


def environment() -> dict:
    """The machine and library versions the numbers were measured with (``quantlens doctor``'s
    data)."""
    from quantlens.eval.environment import environment_info

    return environment_info(check_engines=True)


# --- input shape errors -------------------------------------------------------------------------


def _expected_input(model: nn.Module) -> str:
    """What the first layer expects, e.g. ``(N, 1, H, W)``, for an error message."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            dims = {nn.Conv1d: "L", nn.Conv2d: "H, W", nn.Conv3d: "D, H, W"}[type(module)]
            return f"(N, {module.in_channels}, {dims})"
        if isinstance(module, nn.Linear):
            return f"(N, ..., {module.in_features})"
        if isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
            return (
                f"(N, T, {module.input_size})"
                if module.batch_first
                else f"(T, N, {module.input_size})"
            )
        if isinstance(module, nn.Embedding):
            return f"integer ids < {module.num_embeddings}"
    return "unknown"


def _shapes(batch: Batch) -> str:
    parts = [str(tuple(a.shape)) for a in batch.args if isinstance(a, torch.Tensor)]
    parts += [
        f"{k}={tuple(v.shape)}" for k, v in batch.kwargs.items() if isinstance(v, torch.Tensor)
    ]
    return ", ".join(parts)


def reference_outputs(model: nn.Module, data, *, limit: int | None = None) -> _quality.Outputs:
    """Float outputs over ``data`` (its first ``limit`` batches); a shape mismatch becomes
    an InputError naming both shapes. ``limit=1`` checks that the data fits the model
    before anything slow (or any file) is started."""
    try:
        return _quality.collect_outputs(model, data, limit=limit)
    except QuantlensError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        batch = first_batch(data)
        raise InputError(
            f"the data does not fit the model: inputs of shape {_shapes(batch)}, but the model "
            f"expects {_expected_input(model)} ({str(exc).splitlines()[0][:160]})"
        ) from exc


# --- one row ------------------------------------------------------------------------------------


def _is_qat(config: QuantConfig) -> bool:
    return "qat" in methods() and isinstance(config, get_method("qat").config_cls)


def quantize_one(
    model: nn.Module,
    config: QuantConfig,
    *,
    calib_data,
    train_data,
    example_inputs,
    qat_epochs: int,
    progress: bool | None,
    notes: list[str],
) -> nn.Module:
    """Quantize ``model`` with ``config`` the way the comparison does (QAT trains first)."""
    if _is_qat(config) and train_data is not None:
        from quantlens.methods.qat import train_qat

        prepared = api.prepare_qat(model, config, example_inputs=example_inputs)
        history = train_qat(prepared, train_data, epochs=qat_epochs, progress=progress)
        notes.append(
            f"QAT: {qat_epochs} epoch(s), final train loss {history[-1]['train_loss']:.4f}"
        )
        return api.convert(prepared.eval())
    if _is_qat(config):
        notes.append("no train_data: QAT ran without training (ranges from calibration only)")
    return api.quantize(
        model, config, calib_data=calib_data, example_inputs=example_inputs, progress=progress
    )


def measure_row(
    row: Row,
    model: nn.Module,
    reference: _quality.Outputs,
    data,
    bench: Batch,
    *,
    metric,
    reps: int,
    warmup: int,
    threads: int | None,
    memory: bool,
    progress: bool | None,
    workdir: Path,
    memory_ref: _memory.ModelRef | None = None,
) -> Row:
    """Fill ``row`` with size, latency, memory and quality of ``model``."""
    saved = workdir / row.name.replace("/", "_").replace(" ", "_")
    try:
        _size.save_for_size(model, saved)
        size = _size.measure_size(model, saved_dir=saved)
    except (QuantlensError, RuntimeError, ValueError) as exc:  # unsaveable: in-memory size only
        raise_if_interrupted(exc)
        row.notes.append(f"not saved, no disk size: {str(exc).splitlines()[0][:200]}")
        mem, elems = _size.memory_bytes(model)
        size, saved = _size.SizeResult(0, mem, elems), None
    row.disk_bytes = size.disk_bytes or None
    row.memory_bytes, row.num_parameters = size.memory_bytes, size.num_parameters
    lat = _latency.measure_latency(
        model,
        bench,
        reps=reps,
        warmup=warmup,
        threads=threads,
        progress=progress,
        description=f"timing {row.name}",
    )
    row.latency_ms, row.latency_p95_ms, row.items_per_s = lat.median_ms, lat.p95_ms, lat.items_per_s
    row.batch_size, row.threads = lat.batch_size, lat.threads
    outputs = _quality.collect_outputs(model, data)
    q = _quality.measure_quality(reference, outputs, metric=metric)
    row.accuracy, row.metric, row.agreement = q.accuracy, q.metric, q.agreement
    row.sqnr_db, row.cosine = q.sqnr_db, q.cosine
    if memory:
        ref = memory_ref
        if ref is None and saved is not None:
            is_float = getattr(model, "quantlens_config", None) is None
            # written here from the caller's model, whose source the caller gave (see ModelRef)
            if not is_float:
                ref = _memory.ModelRef.checkpoint(saved, trust_code=True)
            elif (saved / "source.json").exists():
                ref = _memory.ModelRef.float_dir(saved, trust_code=True)
        if ref is None:
            row.notes.append(
                "peak memory not measured: the model records no way to rebuild it in a child "
                "process"
            )
        else:
            try:
                m = _memory.measure_peak_memory(ref, bench, threads=threads)
                row.peak_memory_bytes, row.model_memory_bytes = m.inference_bytes, m.model_bytes
            except QuantlensError as exc:
                raise_if_interrupted(exc)
                row.notes.append(f"peak memory not measured: {exc}")
    return row


def _summary_counts(row: Row, float_model: nn.Module, model: nn.Module) -> None:
    """Quantized / float layer counts and the summary's notes; one note per reason layers stayed
    float."""
    summary = getattr(model, "quantlens_summary", None)
    if summary is None:
        return
    left = float_layers(float_model, model)
    row.layers_quantized, row.layers_float = len(summary.quantized), len(left)
    row.float_kinds = dict(Counter(layer["kind"] for layer in left))
    by_reason: dict[tuple[str, str], list[str]] = {}
    for layer in left:
        by_reason.setdefault((layer["kind"], layer["reason"]), []).append(layer["name"])
    for (kind, reason), names in by_reason.items():
        shown = ", ".join(names[:6]) + (f", … ({len(names) - 6} more)" if len(names) > 6 else "")
        row.notes.append(f"{len(names)} {kind} left float ({reason}): {shown}")
    row.notes.extend(summary.notes)


def _keep_warnings(row: Row, caught: list) -> None:
    """quantlens' own warnings during quantization become the row's notes (shown in the
    report instead of interleaved with the progress output); upstream deprecations are dropped."""
    for w in caught:
        if issubclass(w.category, DeprecationWarning) or not str(w.filename).startswith(
            _PACKAGE_DIR
        ):
            continue
        text = f"warning: {w.message}"
        if text not in row.notes and str(w.message) not in row.notes:
            row.notes.append(text)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"{type(exc).__name__}: {text[:300]}" if not isinstance(exc, QuantlensError) else text[:300]
    )


# --- the run ------------------------------------------------------------------------------------


def run_comparison(
    model: nn.Module,
    configs: Mapping[str, QuantConfig],
    *,
    data,
    calib_data=None,
    train_data=None,
    metric: Callable | None = None,
    example_inputs: tuple | None = None,
    reps: int = _latency.DEFAULT_REPS,
    warmup: int = _latency.DEFAULT_WARMUP,
    threads: int | None = None,
    qat_epochs: int = 1,
    memory: bool = True,
    float_ref: _memory.ModelRef | None = None,
    progress: bool | None = None,
    command: str | None = None,
    on_start: Callable[[str, int, int], None] | None = None,
    on_row: Callable[[Row, Comparison], None] | None = None,
    on_model: Callable[[Row, nn.Module, Batch], None] | None = None,
) -> Comparison:
    """Measure the float model and every config on the same data (see the module docstring).

    Args:
        model: the float model (left untouched).
        configs: ``{row name: config}``; a value may also be a model already quantized by
            quantlens (``ql.quantize`` / ``ql.load``), measured as it is.
        data: evaluation data (any form ``iter_batches`` accepts); its first batch is timed.
        calib_data: calibration data for Static (default: the first batches of ``data``, noted).
        train_data: labelled data QAT configs train on for ``qat_epochs``.
        metric: optional ``metric(outputs, labels) -> float``.
        example_inputs: inputs for tracing and timing (default: the first batch of ``data``).
        reps, warmup, threads: latency settings (:func:`quantlens.eval.latency.measure_latency`).
        memory: measure peak memory in child processes.
        float_ref: how a child process rebuilds the float model, when it records no source.
        progress: progress bars (default: when stderr is a terminal).
        command: the command line to record.
        on_start: called ``(name, index, total)`` before each model.
        on_row: called ``(row, comparison)`` after each row (to save results incrementally).
        on_model: called ``(row, quantized_model, batch)`` for each measured quantized model
            (per-layer diagnostics); its errors are the caller's to handle.

    Returns:
        A :class:`Comparison`; its first row is ``"float"``.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    check_number("reps", reps, 1, integer=True)
    check_number("warmup", warmup, 0, integer=True)
    check_number("threads", threads, 1, integer=True)
    check_number("qat_epochs", qat_epochs, 1, integer=True)
    for what, extra in (("calib_data", calib_data), ("train_data", train_data)):
        if extra is not None and not is_one_shot(extra, what):
            first_batch(extra, what)  # bad, empty or NaN data fails now, not as a failed row later
    for name, cfg in configs.items():
        if not isinstance(cfg, QuantConfig) and getattr(cfg, "quantlens_config", None) is None:
            raise InputError(
                f"method {name!r} maps to a {type(cfg).__name__}; give a config such as "
                "ql.Dynamic() or a model returned by ql.quantize / ql.load"
            )
    model.eval()
    bench = _latency.as_batch(example_inputs) if example_inputs is not None else first_batch(data)
    bench = Batch(bench.args, bench.kwargs)
    example = tuple(a[:2] for a in bench.args) if bench.args and not bench.kwargs else None
    settings = {
        "reps": reps,
        "warmup": warmup,
        "threads": threads or torch.get_num_threads(),
        "batch_size": bench.size,
        "qat_epochs": qat_epochs,
        "memory": memory,
    }
    comparison = Comparison([], environment(), command, settings)
    reference = reference_outputs(model, data)
    settings["task"] = (
        "embedding"
        if reference.kind == "embedding"
        else ("classification" if reference.labels is not None else "outputs")
    )
    settings["samples"] = int(reference.values.shape[0])
    if calib_data is None and configs:
        calib_data = data
        settings["calibration"] = "on the evaluation data (no calib_data given)"
    total = len(configs) + 1

    def finish(row: Row) -> None:
        comparison.rows.append(row)
        if on_row is not None:
            on_row(row, comparison)

    with tempfile.TemporaryDirectory(prefix="quantlens-compare-") as tmp, InterruptWatch() as watch:
        workdir = Path(tmp)
        try:
            if on_start:
                on_start("float", 1, total)
            row = Row("float", "float")
            measure_row(
                row,
                model,
                reference,
                data,
                bench,
                metric=metric,
                reps=reps,
                warmup=warmup,
                threads=threads,
                memory=memory,
                progress=progress,
                workdir=workdir,
                memory_ref=float_ref,
            )
            finish(row)
            if watch.requested:
                raise KeyboardInterrupt
            for i, (name, cfg) in enumerate(configs.items(), start=2):
                if on_start:
                    on_start(name, i, total)
                given = None if isinstance(cfg, QuantConfig) else cfg  # an already quantized model
                config = cfg if given is None else given.quantlens_config
                row = Row(name, config.method, config.to_dict())
                try:
                    start = time.perf_counter()
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        qm = (
                            given
                            if given is not None
                            else quantize_one(
                                model,
                                cfg,
                                calib_data=calib_data,
                                train_data=train_data,
                                example_inputs=example,
                                qat_epochs=qat_epochs,
                                progress=progress,
                                notes=row.notes,
                            )
                        )
                    row.quantize_s = None if given is not None else time.perf_counter() - start
                    _summary_counts(row, model, qm)
                    _keep_warnings(row, caught)
                    measure_row(
                        row,
                        qm,
                        reference,
                        data,
                        bench,
                        metric=metric,
                        reps=reps,
                        warmup=warmup,
                        threads=threads,
                        memory=memory,
                        progress=progress,
                        workdir=workdir,
                    )
                    if on_model is not None:
                        on_model(row, qm, bench)
                except Exception as exc:
                    if watch.requested or interrupted_by(
                        exc
                    ):  # a Ctrl-C a dependency wrapped or swallowed
                        raise KeyboardInterrupt from exc
                    log.debug("method %s failed", name, exc_info=True)
                    row.status, row.error = "failed", _error_text(exc)
                finish(row)
                if watch.requested:  # swallowed inside a row that still finished: stop after it
                    raise KeyboardInterrupt
        except (
            Exception,
            KeyboardInterrupt,
        ) as exc:  # a Ctrl-C, or an error wrapping one, ends the run
            if not (watch.requested or interrupted_by(exc)):
                raise
            comparison.interrupted = True
            log.warning("interrupted: keeping the %d row(s) measured so far", len(comparison.rows))
    return comparison
