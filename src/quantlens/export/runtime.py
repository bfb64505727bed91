"""Run an exported file in its own runtime and measure its agreement with the model.

:func:`load_runner` gives one callable per format (ONNX Runtime session, torch.export
program, TorchScript module), so anything that measures a deployed model -- ``quantlens
export --check`` here, a comparison row later -- calls the exported file the same way:

    >>> run = load_runner(ql.export(qm, "m.onnx", format="onnx", example_inputs=(x,)))
    >>> logits = run(x)[0]
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from quantlens.errors import InputError, UnknownNameError, error_line, require
from quantlens.export.inputs import ExampleInputs, flatten_outputs

SUFFIXES = {
    ".onnx": "onnx",
    ".pt2": "pt2",
    ".pt": "torchscript",
    ".ts": "torchscript",
    ".jit": "torchscript",
}

Runner = Callable[..., tuple[torch.Tensor, ...]]


def format_of(path: str | os.PathLike, format: str | None = None) -> str:
    """``format``, or the one the file's suffix names (``.onnx``, ``.pt2``, ``.pt``)."""
    if format is not None:
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UnknownNameError(
            f"cannot tell the format of {path} from its suffix; name it .onnx, .pt2 or .pt, "
            "or pass format="
        )
    return SUFFIXES[suffix]


def load_runner(
    path: str | os.PathLike, format: str | None = None, *, threads: int | None = None
) -> Runner:
    """A callable running the exported file: ``run(*tensors) -> tuple of output tensors``.

    Args:
        path: an exported file.
        format: ``"onnx"``, ``"pt2"`` or ``"torchscript"`` (default: from the suffix).
        threads: intra-op threads of the ONNX Runtime session (default: ONNX Runtime's).

    Returns:
        The runner; inputs are given positionally, in the order of the export's inputs.
    """
    fmt = format_of(path, format)
    if not Path(path).is_file():
        raise InputError(f"{path} does not exist; export the model first")
    if fmt == "onnx":
        ort = require("onnxruntime", "onnx")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run_onnx(*tensors):
            feed = {n: t.detach().cpu().numpy() for n, t in zip(names, tensors)}
            return tuple(torch.from_numpy(o) for o in session.run(None, feed))

        return run_onnx
    if fmt == "pt2":
        module = torch.export.load(str(path)).module()
    elif fmt == "torchscript":
        module = torch.jit.load(str(path))
    else:
        raise UnknownNameError(f"unknown export format {fmt!r}; supported: onnx, pt2, torchscript")

    def run_torch(*tensors):
        with torch.no_grad():
            return flatten_outputs(module(*tensors))[1]

    return run_torch


@dataclass(frozen=True)
class ExportCheck:
    """How an exported file agrees with the model it was exported from.

    Attributes:
        format: the file's format.
        samples: rows compared (the first output's batch size).
        max_abs_error: largest absolute difference of the first output.
        cosine: mean per-sample cosine similarity of the first output.
        argmax_agreement: fraction of samples whose argmax over the last axis agrees
            (None when the first output is not ``(batch, classes)``).
        latency_ms: median time of one call of the exported file on the inputs.
        reference_latency_ms: the same for the model in PyTorch.
    """

    format: str
    samples: int
    max_abs_error: float
    cosine: float
    argmax_agreement: float | None
    latency_ms: float
    reference_latency_ms: float

    def passed(self, min_cosine: float = 0.99, min_agreement: float = 0.99) -> bool:
        """Whether the cosine and (where there is one) the argmax agreement reach the thresholds."""
        agree = self.argmax_agreement is None or self.argmax_agreement >= min_agreement
        return self.cosine >= min_cosine and agree

    def __str__(self) -> str:
        agree = (
            ""
            if self.argmax_agreement is None
            else f", argmax agreement {self.argmax_agreement:.2%}"
        )
        return (
            f"{self.format} vs quantlens over {self.samples} samples: max abs error "
            f"{self.max_abs_error:.3g}, cosine {self.cosine:.5f}{agree}; latency "
            f"{self.latency_ms:.2f} ms (PyTorch {self.reference_latency_ms:.2f} ms)"
        )


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def agreement(reference: torch.Tensor, exported: torch.Tensor) -> tuple[float, float, float | None]:
    """``(max_abs_error, mean per-sample cosine, argmax agreement or None)`` of two outputs."""
    if reference.shape != exported.shape:
        raise InputError(
            f"the exported output has shape {tuple(exported.shape)}, the model's "
            f"{tuple(reference.shape)}"
        )
    ref, out = (
        reference.float().reshape(len(reference), -1),
        exported.float().reshape(len(exported), -1),
    )
    cos = F.cosine_similarity(ref, out, dim=1, eps=1e-12).mean().item()
    agree = None
    if reference.ndim == 2:
        agree = (reference.argmax(-1) == exported.argmax(-1)).float().mean().item()
    return (ref - out).abs().max().item(), cos, agree


def check(
    model: nn.Module,
    path: str | os.PathLike,
    inputs: ExampleInputs,
    *,
    format: str | None = None,
    repeats: int = 10,
    threads: int | None = None,
) -> ExportCheck:
    """Run the exported file on ``inputs`` and compare its first output with ``model``'s.

    Args:
        model: the model that was exported (run in PyTorch as the reference).
        path: the exported file.
        inputs: the inputs, e.g. a test batch (any batch size; the sequence length may
            differ from the export's for token inputs).
        repeats: timed calls of each (after one warm-up); the median is reported.

    Returns:
        An :class:`ExportCheck`.
    """
    fmt = format_of(path, format)
    run = load_runner(path, fmt, threads=threads)
    try:
        outs = run(*inputs.tensors)
    except Exception as exc:
        raise InputError(
            f"the exported {fmt} file failed to run on the sample inputs: {error_line(exc)}"
        ) from exc
    with torch.inference_mode():
        refs = flatten_outputs(inputs.call(model, inputs.tensors))[1]
        ref_ms = _median_ms(lambda: inputs.call(model, inputs.tensors), repeats)
    ms = _median_ms(lambda: run(*inputs.tensors), repeats)
    err, cos, agree = agreement(refs[0], outs[0])
    return ExportCheck(fmt, len(refs[0]), err, cos, agree, ms, ref_ms)


def inputs_for(
    names: Sequence[str], tensors: Sequence[torch.Tensor], keyword: bool
) -> ExampleInputs:
    """An :class:`ExampleInputs` from parts (for callers holding their own batches)."""
    return ExampleInputs(list(names), tuple(tensors), keyword)
