"""``format="torchscript"``: trace (or script) with
:mod:`quantlens.methods.backends.torchscript`."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from quantlens.errors import InputError
from quantlens.export.inputs import ExampleInputs
from quantlens.methods.backends import torchscript


def write(
    model: nn.Module, path: str | os.PathLike, inputs: ExampleInputs | None, *, given: bool
) -> Path:
    """Trace ``model`` on ``inputs`` (script it when None) and save it atomically.

    Args:
        given: whether the caller passed the inputs (else they were the recorded shapes),
            which decides the hint of the error.
    """
    if inputs is not None and inputs.keyword:
        raise InputError(
            "TorchScript export takes positional example_inputs=(x, ...); "
            "use format='onnx' or 'pt2' for keyword (dict) inputs"
        )
    example = tuple(inputs.tensors) if inputs is not None else None
    try:
        scripted = torchscript.capture(model, example)
    except Exception as exc:
        cause = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        if example is None:
            hint = "pass example_inputs=(x,) so it is traced instead of scripted"
        elif given:
            hint = "check that example_inputs are the positional inputs the model's forward takes"
        else:
            hint = "pass example_inputs=(x,) to trace it with inputs of your own"
        how = "script" if example is None else "trace"
        raise InputError(f"TorchScript could not {how} this model ({cause}); {hint}") from exc
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(
            f"cannot write {path}: the folder {path.parent} does not exist; create it first"
        )
    return torchscript.save(scripted, path)
