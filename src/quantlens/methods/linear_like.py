"""Layers that compute a Linear under another class, made ``nn.Linear`` before quantizing.

Hugging Face's GPT-2 family (GPT-2, DistilGPT-2, GPT-J's predecessors, DialoGPT, ...) writes
every projection as ``transformers.pytorch_utils.Conv1D``: ``y = x @ W + b`` with ``W`` of
shape ``(in, out)``, the transpose of ``nn.Linear``'s. No method would find a layer to
quantize in them but the LM head. ``ql.quantize`` and ``ql.prepare`` (and ``ql.load``, on
the skeleton) replace each such layer by the ``nn.Linear`` that computes the same function
(the same name, the weight transposed) and say so in the summary; every method then treats
it as the Linear it is.

A layer kind is matched by its exact class (a subclass may change ``forward``). To add one:
``register_linear_like(LinearLike(name, matches, to_linear, weight))``.

Example:
    >>> qm = ql.quantize(gpt2, ql.WeightOnly(bits=4))  # its 4 x n_layer Conv1D are quantized
    >>> qm.quantlens_summary.notes[0]
    'made 8 Hugging Face Conv1D layer(s) nn.Linear (the same function, the weight transposed)'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn


@dataclass(frozen=True)
class LinearLike:
    """One layer kind that is a Linear in disguise.

    Attributes:
        name: how the summary names the kind.
        matches: whether a module is of this kind.
        to_linear: the ``nn.Linear`` computing the same function (weights copied).
        weight: the module's weight in ``nn.Linear``'s ``(out, in)`` orientation.
    """

    name: str
    matches: Callable[[nn.Module], bool]
    to_linear: Callable[[nn.Module], nn.Linear]
    weight: Callable[[nn.Module], torch.Tensor]


_KINDS: list[LinearLike] = []


def register_linear_like(kind: LinearLike) -> LinearLike:
    """Make ``ql.quantize`` treat layers ``kind.matches`` as ``nn.Linear``."""
    _KINDS.append(kind)
    return kind


def _is_hf_conv1d(module: nn.Module) -> bool:
    cls, weight = type(module), getattr(module, "weight", None)
    return (
        cls.__name__ == "Conv1D"
        and cls.__module__.startswith("transformers.")
        and isinstance(weight, torch.Tensor)
        and weight.ndim == 2
    )


def _conv1d_weight(module: nn.Module) -> torch.Tensor:
    return cast(torch.Tensor, module.weight)  # (in, out): _is_hf_conv1d checked it


def _conv1d_to_linear(module: nn.Module) -> nn.Linear:
    weight = _conv1d_weight(module)
    n_in, n_out = weight.shape
    bias = getattr(module, "bias", None)
    linear = nn.Linear(n_in, n_out, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        if bias is not None:
            linear.bias.copy_(bias)
    linear.train(module.training)
    return linear


register_linear_like(
    LinearLike(
        "Hugging Face Conv1D", _is_hf_conv1d, _conv1d_to_linear, lambda m: _conv1d_weight(m).t()
    )
)


def kind_of(module: nn.Module) -> LinearLike | None:
    """The registered kind ``module`` is, or None."""
    return next((k for k in _KINDS if k.matches(module)), None)


def linear_weight(module: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (``module``'s) in ``nn.Linear`` orientation: transposed for a linear-like
    layer, unchanged for any other (for comparing a float layer with its quantized one)."""
    kind = kind_of(module)
    return kind.weight(module) if kind is not None else weight


def make_linear(model: nn.Module) -> dict[str, int]:
    """Replace every linear-like layer inside ``model`` by its ``nn.Linear``, in place.

    Args:
        model: the model (its root is never replaced).

    Returns:
        ``{kind name: number replaced}`` (empty when there were none).
    """
    found: dict[str, int] = {}
    made: dict[int, nn.Linear] = {}  # a layer shared by two parents stays shared
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            kind = kind_of(child)
            if kind is None:
                continue
            if id(child) not in made:
                made[id(child)] = kind.to_linear(child)
                found[kind.name] = found.get(kind.name, 0) + 1
            setattr(parent, child_name, made[id(child)])
    return found


def notes(found: dict[str, int]) -> list[str]:
    """The summary notes for what :func:`make_linear` replaced."""
    return [
        f"made {n} {name} layer(s) nn.Linear (the same function, the weight transposed)"
        for name, n in found.items()
    ]
