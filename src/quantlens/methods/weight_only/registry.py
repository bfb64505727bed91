"""The weight-only algorithm registry: how a weight becomes integer codes.

Each algorithm (round-to-nearest, HQQ, GPTQ, ...) lives in its own module of this package
and registers an :class:`Algorithm` here at import; ``WeightOnly(algorithm=name)`` looks it
up in :data:`ALGORITHMS`.

To add an algorithm, write ``quantize(weight, scheme, stats) -> QTensor`` (and, if it needs
data, ``collect(model, names, ctx) -> {name: stats}``) in a new module of this package, call
``register_algorithm(Algorithm(...))`` at its end, and import it from the package's
``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from quantlens.core.qtensor import QTensor
from quantlens.core.scheme import QScheme
from quantlens.methods.base import QuantContext


@dataclass(frozen=True)
class Algorithm:
    """How a weight becomes integer codes.

    Args:
        name: the ``algorithm=`` value.
        quantize: ``(weight, scheme, stats) -> QTensor``; ``stats`` is what ``collect``
            gathered for the layer (None for data-free algorithms).
        collect: ``(model, names, ctx) -> {name: stats}`` run on the float model before any
            layer is replaced, or None.
        kinds: module kinds (``"linear"``, ``"embedding"``) it handles; other kinds fall
            back to ``fallback``.
        fallback: the algorithm used for kinds it does not handle.
        codebooks: whether it handles codebook (non-uniform) schemes.
    """

    name: str
    quantize: Callable[[torch.Tensor, QScheme, Any], QTensor]
    collect: Callable[[nn.Module, list[str], QuantContext], dict[str, Any]] | None = None
    kinds: tuple[LayerKind, ...] | None = None
    fallback: AlgorithmName = "rtn"
    codebooks: bool = False


ALGORITHMS: dict[str, Algorithm] = {}

#: The built-in algorithm names (an algorithm registered later adds its name here).
AlgorithmName = Literal["rtn", "hqq", "gptq"]
#: The layer kinds an algorithm can be limited to (``Algorithm.kinds``).
LayerKind = Literal["linear", "embedding", "conv2d"]


def register_algorithm(algorithm: Algorithm) -> Algorithm:
    """Make ``WeightOnly(algorithm=algorithm.name)`` available (replaces one of that name).

    Args:
        algorithm: the :class:`Algorithm` to register.

    Returns:
        ``algorithm``, so that the call can wrap a definition.

    Example:
        >>> register_algorithm(Algorithm("rtn", lambda w, scheme, _: quantize_tensor(w, scheme)))
    """
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm
