"""The rows of a deployed model: a model measured in PyTorch is exported to ONNX
(:func:`quantlens.api.export`), loaded in ONNX Runtime (:func:`quantlens.export.load_runner`)
and measured with the same functions and settings as its PyTorch row -- size (the ``.onnx``
file's bytes), latency (same batch, warm-up, repetitions and thread count: the session's
intra-op threads are the timing's), and quality against the same float reference outputs.

A model that cannot be exported (or whose file ONNX Runtime cannot run) becomes a failed row
with the one-line reason; the run goes on.

Example:
    >>> row = runtime_row(torch_row, qm, yardstick, "onnxruntime")
    >>> row.name, row.runtime, row.disk_bytes
    ('static (onnxruntime)', 'onnxruntime', 41442)
"""

from __future__ import annotations

import torch
from torch import nn

from quantlens import api
from quantlens.compare.measure import Yardstick, error_text, time_and_score
from quantlens.compare.results import Row, runtime_row_name
from quantlens.compare.settings import Runtime
from quantlens.core.data import Batch
from quantlens.errors import error_line, require
from quantlens.eval.interrupts import raise_if_interrupted
from quantlens.export import load_runner

RUNTIME_EXTRAS = {"onnxruntime": ("onnx", "onnxruntime")}  # runtime -> modules it needs


def require_runtimes(runtimes: tuple[str, ...]) -> None:
    """Import what each runtime needs now, before any row is measured; a missing module
    raises MissingDependencyError naming the extra (``pip install 'quantlens[onnx]'``)."""
    for runtime in runtimes:
        for module in RUNTIME_EXTRAS.get(runtime, ()):
            require(module, "onnx")


def runtime_versions(runtimes: tuple[str, ...]) -> dict[str, str]:
    """``{"onnxruntime": "1.x"}`` for the runtimes other than torch (for the environment)."""
    return {r: str(require(r, "onnx").__version__) for r in runtimes if r in RUNTIME_EXTRAS}


class RuntimeModule(nn.Module):
    """An exported file's runner as a module, so the latency and quality functions of
    :mod:`quantlens.eval` call it as they call a model: positional inputs, or keyword inputs
    put in the order of the export's input names."""

    def __init__(self, runner, names: list[str]) -> None:
        super().__init__()
        self.runner, self.names = runner, names

    def forward(self, *args, **kwargs):
        tensors = args if not kwargs else tuple(kwargs[n] for n in self.names if n in kwargs)
        outputs = self.runner(*tensors)
        return outputs[0] if len(outputs) == 1 else outputs


def _example(batch: Batch):
    """Export inputs from the timed batch (two samples: the batch axis stays dynamic)."""
    if batch.kwargs:
        return {k: v[:2] for k, v in batch.kwargs.items() if isinstance(v, torch.Tensor)}
    return tuple(a[:2] for a in batch.args)


def _export_onnx(model: nn.Module, row: Row, ys: Yardstick) -> tuple[RuntimeModule, int]:
    """``(module running the ONNX file, file bytes)``; export errors propagate."""
    example = _example(ys.batch)
    stem = row.name.replace("/", "_").replace(" ", "_")
    path = api.export(model, ys.workdir / f"{stem}.onnx", format="onnx", example_inputs=example)
    threads = ys.timing.threads or torch.get_num_threads()
    names = list(example) if isinstance(example, dict) else []
    return RuntimeModule(load_runner(path, "onnx", threads=threads), names), path.stat().st_size


def runtime_row(source: Row, model: nn.Module, ys: Yardstick, runtime: Runtime) -> Row:
    """The row of ``model`` (measured as ``source`` in PyTorch) run in ``runtime``.

    Args:
        source: the model's PyTorch row (its name, method and config are carried over).
        model: the model that row measured.
        ys: the run's yardstick (the same batch, data, reference, timing and folder).
        runtime: ``"onnxruntime"``.

    Returns:
        A new :class:`~quantlens.compare.results.Row` named
        :func:`~quantlens.compare.results.runtime_row_name`; failed with the reason when the
        model cannot be exported or run there.
    """
    row = Row(runtime_row_name(source.name, runtime), source.method, source.config, runtime=runtime)
    try:
        module, file_bytes = _export_onnx(model, row, ys)
    except Exception as exc:  # noqa: BLE001 - an unexportable model is a failed row, not a crash
        raise_if_interrupted(exc)
        row.status, row.error = "failed", f"cannot export to ONNX: {error_text(exc)}"
        return row
    row.disk_bytes = file_bytes
    try:
        time_and_score(row, module, ys)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own errors: a failed row too
        raise_if_interrupted(exc)
        row.status = "failed"
        row.error = f"ONNX Runtime could not run the exported file: {error_line(exc)}"
        return row
    row.notes.append(
        f"exported to ONNX and run in ONNX Runtime with {row.threads} intra-op thread(s)"
    )
    if ys.memory:
        row.notes.append("peak memory is measured for PyTorch rows only")
    return row


__all__ = ["RUNTIME_EXTRAS", "RuntimeModule", "require_runtimes", "runtime_row", "runtime_versions"]
