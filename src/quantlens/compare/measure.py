"""One row of a comparison: quantize a model the way the comparison does, then measure its
size (:mod:`quantlens.eval.size`), latency (:mod:`quantlens.eval.latency`), peak memory in a
child process (:mod:`quantlens.eval.memory`) and quality against the float outputs
(:mod:`quantlens.eval.quality`) into a :class:`~quantlens.compare.results.Row`.

Example:
    >>> qm = quantize_one(model, ql.Static(), DataSettings(test, calib_data=calib), notes=[])
    >>> measure_row(Row("static", "static"), qm, yardstick)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quantlens import api
from quantlens.compare.results import Row
from quantlens.compare.settings import DataSettings, Timing
from quantlens.core.data import Batch, first_batch
from quantlens.errors import InputError, QuantlensError
from quantlens.eval import latency as _latency
from quantlens.eval import memory as _memory
from quantlens.eval import quality as _quality
from quantlens.eval import size as _size
from quantlens.eval.coverage import float_layers
from quantlens.eval.interrupts import raise_if_interrupted
from quantlens.methods.base import QuantConfig, get_method, methods

_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


@dataclass(frozen=True)
class Yardstick:
    """What every row of one run is measured against and how.

    Attributes:
        reference: the float model's outputs over ``data``.
        data: the evaluation data; batch: the timed batch.
        metric: the user metric, if any; timing: the latency settings.
        memory: measure peak memory in a child process.
        progress: progress bars; workdir: where models are saved for their size.
    """

    reference: _quality.Outputs
    data: Any
    batch: Batch
    metric: Any
    timing: Timing
    memory: bool
    progress: bool | None
    workdir: Path


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
            f"the data does not fit the model: inputs of shape {_shapes(batch)}, "
            "but the model expects "
            f"{_expected_input(model)} ({str(exc).splitlines()[0][:160]})"
        ) from exc


# --- one row ------------------------------------------------------------------------------------


def _is_qat(config: QuantConfig) -> bool:
    return "qat" in methods() and isinstance(config, get_method("qat").config_cls)


def quantize_one(
    model: nn.Module,
    config: QuantConfig,
    data: DataSettings,
    *,
    progress: bool | None = None,
    notes: list[str] | None = None,
) -> nn.Module:
    """Quantize ``model`` with ``config`` the way the comparison does (QAT trains first).

    Args:
        model: the float model (left untouched).
        config: the method's config.
        data: ``calib_data``, ``train_data`` (QAT trains ``qat_epochs`` on it) and
            ``example_inputs`` (for tracing); ``data.data`` is not used.
        progress: progress bars.
        notes: a list the training notes are appended to.

    Returns:
        The quantized model.
    """
    notes = notes if notes is not None else []
    if _is_qat(config) and data.train_data is not None:
        from quantlens.methods.qat import train_qat

        prepared = api.prepare_qat(model, config, example_inputs=data.example_inputs)
        history = train_qat(prepared, data.train_data, epochs=data.qat_epochs, progress=progress)
        notes.append(
            f"QAT: {data.qat_epochs} epoch(s), final train loss {history[-1]['train_loss']:.4f}"
        )
        return api.convert(prepared.eval())
    if _is_qat(config):
        notes.append("no train_data: QAT ran without training (ranges from calibration only)")
    return api.quantize(
        model,
        config,
        calib_data=data.calib_data,
        example_inputs=data.example_inputs,
        progress=progress,
    )


def _memory_ref(row: Row, model: nn.Module, saved: Path | None) -> _memory.ModelRef | None:
    """How a child process rebuilds ``model`` from the folder it was saved to, if it can."""
    if saved is None:
        return None
    # written here from the caller's model, whose source the caller gave (see ModelRef)
    if getattr(model, "quantlens_config", None) is not None:
        return _memory.ModelRef.checkpoint(saved, trust_code=True)
    if (saved / "source.json").exists():
        return _memory.ModelRef.float_dir(saved, trust_code=True)
    return None


def _measure_memory(row: Row, ref: _memory.ModelRef | None, ys: Yardstick) -> None:
    if ref is None:
        row.notes.append(
            "peak memory not measured: the model records no way to rebuild it in a child process"
        )
        return
    try:
        m = _memory.measure_peak_memory(ref, ys.batch, threads=ys.timing.threads)
        row.peak_memory_bytes, row.model_memory_bytes = m.inference_bytes, m.model_bytes
    except QuantlensError as exc:
        raise_if_interrupted(exc)
        row.notes.append(f"peak memory not measured: {exc}")


def measure_row(
    row: Row, model: nn.Module, ys: Yardstick, memory_ref: _memory.ModelRef | None = None
) -> Row:
    """Fill ``row`` with size, latency, memory and quality of ``model``.

    Args:
        row: the row to fill (its name names the saved folder).
        model: the model measured.
        ys: what it is measured against and how.
        memory_ref: how a child process rebuilds ``model`` (default: from the folder it is
            saved to for its size).

    Returns:
        ``row``.
    """
    folder = ys.workdir / row.name.replace("/", "_").replace(" ", "_")
    saved: Path | None = folder
    try:
        _size.save_for_size(model, folder)
        size = _size.measure_size(model, saved_dir=folder)
    except (QuantlensError, RuntimeError, ValueError) as exc:  # unsaveable: in-memory size only
        raise_if_interrupted(exc)
        row.notes.append(f"not saved, no disk size: {str(exc).splitlines()[0][:200]}")
        mem, elems = _size.memory_bytes(model)
        size, saved = _size.SizeResult(0, mem, elems), None
    row.disk_bytes = size.disk_bytes or None
    row.memory_bytes, row.num_parameters = size.memory_bytes, size.num_parameters
    time_and_score(row, model, ys)
    if ys.memory:
        _measure_memory(row, memory_ref or _memory_ref(row, model, saved), ys)
    return row


def time_and_score(row: Row, model, ys: Yardstick) -> None:
    """Fill ``row``'s latency (``ys.timing`` on ``ys.batch``) and quality (``ys.data``'s
    outputs against ``ys.reference``) from ``model``: a module or a runtime's runner."""
    lat = _latency.measure_latency(
        model,
        ys.batch,
        reps=ys.timing.reps,
        warmup=ys.timing.warmup,
        threads=ys.timing.threads,
        progress=ys.progress,
        description=f"timing {row.name}",
    )
    q = _quality.measure_quality(
        ys.reference, _quality.collect_outputs(model, ys.data), metric=ys.metric
    )
    row.latency_ms, row.latency_p95_ms, row.items_per_s = lat.median_ms, lat.p95_ms, lat.items_per_s
    row.batch_size, row.threads = lat.batch_size, lat.threads
    row.accuracy, row.metric, row.agreement = q.accuracy, q.metric, q.agreement
    row.sqnr_db, row.cosine = q.sqnr_db, q.cosine


def summary_counts(row: Row, float_model: nn.Module, model: nn.Module) -> None:
    """Quantized / float layer counts and the summary's notes; one note per reason layers
    stayed float."""
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


def keep_warnings(row: Row, caught: list) -> None:
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


def error_text(exc: BaseException) -> str:
    """A failed row's one-line error: the message (with the exception's type unless it is a
    QuantlensError), at most 300 characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"{type(exc).__name__}: {text[:300]}" if not isinstance(exc, QuantlensError) else text[:300]
    )


__all__ = [
    "Yardstick",
    "error_text",
    "keep_warnings",
    "measure_row",
    "quantize_one",
    "reference_outputs",
    "summary_counts",
]
