"""Exporting a quantized model for deployment: ONNX, torch.export (pt2), TorchScript."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from quantlens.core.data import ModelInputs
from quantlens.export import ExportFormat, WeightOp
from quantlens.export import export as export_model


def export(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    format: ExportFormat = "torchscript",
    example_inputs: ModelInputs | None = None,
    weight_op: WeightOp = "auto",
) -> Path:
    """Export a quantized model for deployment.

    ``format="onnx"`` (needs ``pip install 'quantlens[onnx]'``):

    - Static / QAT int8: a QDQ graph as ONNX Runtime's ``quantize_static`` writes it (int8
      per-channel weights, int32 biases, the model's own activation scales and zero-points
      as QuantizeLinear/DequantizeLinear pairs), which ONNX Runtime runs on its int8 kernels;
    - Dynamic int8: per-token activation scales computed in the graph and ``MatMulInteger``;
    - weight-only: packed codes in ``MatMulNBits`` (Linear), ``DequantizeLinear`` (Conv2d,
      UINT4 up to 4 bits) and ``Gather`` of packed rows (Embedding).

    A layer with no ONNX form raises an error naming it; the graph is never silently float.
    ``format="pt2"``: a ``torch.export`` program (weight-only and dynamic models) that runs
    with PyTorch alone. ``format="torchscript"``: Static, QAT and Dynamic models, loaded with
    ``torch.jit.load``.

    Args:
        model: a quantized model (left unchanged).
        path: output file (written atomically; its folder must exist).
        format: ``"onnx"``, ``"pt2"`` or ``"torchscript"``.
        example_inputs: a tensor, a tuple of positional tensors, or a dict of keyword
            tensors (a tokenized Hugging Face batch). ONNX and pt2 need them unless the model
            records its input shapes (Static/QAT models do); their batch axis (and the
            sequence axis of integer inputs) stays dynamic. TorchScript traces with them
            (scripts without); a traced model takes inputs of the same rank.
        weight_op: ONNX form of weight-only Linear layers: ``"auto"`` (MatMulNBits where the
            scheme allows), ``"matmulnbits"`` or ``"dequantize"`` (DequantizeLinear + MatMul).

    Returns:
        The written path.

    Raises:
        InputError: bad path or inputs, or a layer the format cannot express (named).
        MissingDependencyError: ``onnx`` is not installed (the message names the extra).

    Example:
        >>> ql.export(qm, "model.onnx", format="onnx", example_inputs=(x,))
        >>> ql.export(qm, "model.pt", example_inputs=(x,)); torch.jit.load("model.pt")(x)
    """
    return export_model(
        model, path, format=format, example_inputs=example_inputs, weight_op=weight_op
    )
