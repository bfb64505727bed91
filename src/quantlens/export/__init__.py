"""Deployment formats: ONNX (QDQ, MatMulNBits, integer ops), torch.export (pt2), TorchScript.

One writer module per format (``onnx_writer``, ``pt2``, ``torchscript``), each with
``write(model, path, inputs, ...) -> Path``; :func:`export` is what ``ql.export`` calls.
:func:`load_runner` runs an exported file in its runtime and :func:`check` measures how it
agrees with the model it came from (``quantlens export --check``; a comparison row can
call the exported file the same way).

Example:
    >>> path = export(qm, "m.onnx", format="onnx", example_inputs=(x,))
    >>> print(check(qm, path, example_inputs_of(qm, (test_x,))))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from torch import nn

from quantlens.core.data import ModelInputs
from quantlens.errors import InputError, UnknownNameError
from quantlens.export import onnx_writer, pt2, torchscript
from quantlens.export.inputs import ExampleInputs, example_inputs_of
from quantlens.export.onnx_layers import WEIGHT_OPS, WeightOp
from quantlens.export.runtime import ExportCheck, check, format_of, load_runner
from quantlens.methods.int8_inputs import make_inputs

ExportFormat = Literal["onnx", "pt2", "torchscript"]
"""A deployment format :func:`export` writes."""
FORMATS: tuple[str, ...] = get_args(ExportFormat)


def _inputs(model: nn.Module, example_inputs, required: bool) -> tuple[ExampleInputs | None, bool]:
    given = example_inputs is not None
    if not given:
        recorded = getattr(model, "quantlens_example_inputs", None)
        if recorded:
            example_inputs = make_inputs(recorded)
        elif not required:
            return None, False
    return example_inputs_of(model, example_inputs), given


def export(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    format: ExportFormat = "torchscript",
    example_inputs: ModelInputs | None = None,
    weight_op: WeightOp = "auto",
) -> Path:
    """Write ``model`` in a deployment format (see :func:`quantlens.api.export`)."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module to export, got {type(model).__name__}")
    if format not in FORMATS:
        raise UnknownNameError(f"unknown export format {format!r}; supported: {', '.join(FORMATS)}")
    if weight_op not in WEIGHT_OPS:
        raise InputError(f"unknown weight_op {weight_op!r}; choose one of {', '.join(WEIGHT_OPS)}")
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(
            f"cannot write {path}: the folder {path.parent} does not exist; create it first"
        )
    if format == "torchscript":
        inputs, given = _inputs(model, example_inputs, required=False)
        return torchscript.write(model, path, inputs, given=given)
    inputs, _ = _inputs(model, example_inputs, required=True)
    if format == "onnx":
        return onnx_writer.write(model, path, inputs, weight_op=weight_op)
    return pt2.write(model, path, inputs)


__all__ = [
    "FORMATS",
    "ExampleInputs",
    "ExportCheck",
    "ExportFormat",
    "WeightOp",
    "check",
    "example_inputs_of",
    "export",
    "format_of",
    "load_runner",
]
