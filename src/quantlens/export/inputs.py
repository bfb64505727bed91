"""Example inputs and outputs of an export: names, dynamic axes, one adapter module.

A model is called with positional tensors (``example_inputs=(x,)``) or keyword tensors
(``example_inputs={"input_ids": ..., "attention_mask": ...}``, Hugging Face style). The
exported program always takes the tensors positionally in that order, under those names,
and returns a flat tuple of tensors (a ``ModelOutput`` or dict gives its tensor fields in
order, under their keys).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from quantlens.errors import InputError


@dataclass
class ExampleInputs:
    """Inputs of one export.

    Attributes:
        names: input names, in call order.
        tensors: the example tensors, in the same order.
        keyword: whether the model takes them as keyword arguments.
    """

    names: list[str]
    tensors: tuple[torch.Tensor, ...]
    keyword: bool

    def call(self, model: nn.Module, tensors) -> object:
        """``model`` called on ``tensors`` (positional or by name, as the example was)."""
        if self.keyword:
            return model(**dict(zip(self.names, tensors)))
        return model(*tensors)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Batch (axis 0) is dynamic everywhere; axis 1 of integer inputs (token ids,
        masks) is the sequence."""
        axes = {}
        for name, t in zip(self.names, self.tensors):
            axes[name] = {0: "batch"} if t.ndim else {}
            if t.ndim >= 2 and not t.is_floating_point():
                axes[name][1] = "sequence"
        return axes

    @property
    def has_sequence(self) -> bool:
        return any(1 in a for a in self.dynamic_axes().values())


def example_inputs_of(model: nn.Module, example_inputs) -> ExampleInputs:
    """Normalize ``example_inputs`` (a tensor, a tuple of tensors or a dict of tensors).

    Raises:
        InputError: there are none, or they are not tensors.
    """
    if example_inputs is None:
        raise InputError(
            "this export needs example inputs: pass example_inputs=(x,) or a dict of tensors "
            "(e.g. a tokenized batch)"
        )
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if isinstance(example_inputs, dict) or hasattr(example_inputs, "keys"):
        items = [(k, v) for k, v in example_inputs.items() if k not in ("labels", "label")]
        names, tensors, keyword = [k for k, _ in items], tuple(v for _, v in items), True
    else:
        tensors, keyword = tuple(example_inputs), False
        names = _parameter_names(model, len(tensors))
    bad = [n for n, t in zip(names, tensors) if not isinstance(t, torch.Tensor)]
    if bad or not tensors:
        raise InputError(f"example_inputs must be tensors; {', '.join(bad) or 'none were given'}")
    return ExampleInputs(names, tensors, keyword)


def _parameter_names(model: nn.Module, n: int) -> list[str]:
    try:
        params = [
            p.name
            for p in inspect.signature(model.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    names = params[:n] if len(params) >= n else [f"input_{i}" for i in range(n)]
    return names if len(set(names)) == n else [f"input_{i}" for i in range(n)]


def flatten_outputs(out) -> tuple[list[str], tuple[torch.Tensor, ...]]:
    """Names and tensors of a model's output (tensor, tuple, dict or ``ModelOutput``)."""
    if isinstance(out, torch.Tensor):
        return ["output"], (out,)
    if hasattr(out, "keys") and hasattr(out, "items"):
        items = [(k, v) for k, v in out.items() if isinstance(v, torch.Tensor)]
        return [k for k, _ in items], tuple(v for _, v in items)
    if isinstance(out, (tuple, list)):
        tensors = tuple(t for t in out if isinstance(t, torch.Tensor))
        return [f"output_{i}" for i in range(len(tensors))], tensors
    raise InputError(
        f"the model returns a {type(out).__name__}; export needs tensors, a tuple or a dict of them"
    )


class Flat(nn.Module):
    """``model`` taking its example inputs positionally and returning a flat tuple of tensors."""

    def __init__(self, model: nn.Module, inputs: ExampleInputs) -> None:
        super().__init__()
        self.model = model
        object.__setattr__(self, "_inputs", inputs)

    def forward(self, *tensors):
        return flatten_outputs(self._inputs.call(self.model, tensors))[1]
