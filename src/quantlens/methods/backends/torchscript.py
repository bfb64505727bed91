"""TorchScript capture for deployment: every torch.jit call quantlens makes lives here.

``torch.jit.trace`` / ``torch.jit.script`` are deprecated upstream (torch 2.13 warns on
every call and names ``torch.compile`` / ``torch.export`` as successors), but TorchScript
is still the one format that holds PyTorch's int8 CPU kernels with their packed weights
and loads without Python (``torch.jit.load``, LibTorch). quantlens keeps it behind this
module and silences the deprecation noise.

Capturing a quantized model needs two preparations, both on a copy (the caller's model is
left as it is):

- a layer whose own form TorchScript cannot capture may define ``torchscript_module()``
  returning an equivalent module that it can; that module takes the layer's place
  (:class:`quantlens.nn.dynamic_rnn.DynamicRNN` hands over its torch.ao LSTM / GRU);
- the tracer accepts a TorchScript object (packed int8 weights) only when it is an
  attribute of a module in the traced tree. Layers that build such objects lazily and keep
  them in a Python cache (``DynamicLinear``'s packed fbgemm weights) would fail with "Tried
  to trace <...LinearPackedParamsBase...> but it is not part of the active trace", so the
  copy runs once on the example inputs and every packed object found in a module's plain
  attributes (dicts, lists, tuples) is also set as an attribute of that module.

Tested on torch 2.13.0.

Example:
    >>> scripted = capture(qm, (x,))        # traced; capture(qm) scripts instead
    >>> save(scripted, "model.pt")
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from pathlib import Path

import torch
from torch import nn

TESTED_TORCH_VERSIONS = ("2.13.0",)
_EXPOSED_PREFIX = "_torchscript_object_"
_MODULE_STATE = frozenset({"_parameters", "_buffers", "_modules"})


@contextlib.contextmanager
def quiet():
    """Silence torch.jit's deprecation notices and the tracer's warnings inside the block
    (quantized kernels read their scales as Python numbers, which the tracer reports)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation.*")
        yield


def capture(model: nn.Module, example_inputs: tuple | None = None) -> torch.jit.ScriptModule:
    """A TorchScript module computing what ``model`` computes (in eval mode).

    Args:
        model: the module to capture; left untouched (a copy is prepared and captured).
        example_inputs: positional inputs to trace with; ``None`` scripts instead.

    Returns:
        The traced or scripted module. Whatever torch.jit raises propagates.
    """
    target = _swap_in_torchscript_modules(copy.deepcopy(model)).eval()
    with quiet():
        if example_inputs is None:
            return torch.jit.script(target)
        with torch.no_grad():
            target(*example_inputs)  # builds the packed weights that layers cache lazily
        _expose_cached_script_objects(target)
        return torch.jit.trace(target, example_inputs)


def save(scripted: torch.jit.ScriptModule, path: str | os.PathLike) -> Path:
    """Write ``scripted`` to ``path`` atomically (a temporary name renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with quiet():
            scripted.save(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _swap_in_torchscript_modules(model: nn.Module) -> nn.Module:
    """Replace every module that defines ``torchscript_module()`` by what it returns."""
    make = getattr(model, "torchscript_module", None)
    if callable(make):
        return make()
    for name, child in list(model.named_children()):
        setattr(model, name, _swap_in_torchscript_modules(child))
    return model


def _expose_cached_script_objects(model: nn.Module) -> None:
    """Set every TorchScript object held in a module's plain containers (not its direct
    attributes: the tracer sees those already) as an attribute of that module."""
    for module in model.modules():
        found = [
            obj
            for key, value in vars(module).items()
            if key not in _MODULE_STATE and isinstance(value, (dict, list, tuple))
            for obj in _script_objects(value)
        ]
        for i, obj in enumerate(found):
            object.__setattr__(module, f"{_EXPOSED_PREFIX}{i}", obj)


def _script_objects(value, depth: int = 0) -> list[torch.ScriptObject]:
    if isinstance(value, torch.ScriptObject):
        return [value]
    if depth >= 3:
        return []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [obj for item in value for obj in _script_objects(item, depth + 1)]
    return []
