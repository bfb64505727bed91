"""The layer kinds of weight-only quantization: the names ``WeightOnly(modules=...)``
takes (``"linear"``, ``"embedding"``, ``"conv2d"``: the float classes registered in
:mod:`quantlens.nn.registry`), and the kinds its default picks for a model.

Example:
    >>> normalize_modules((nn.Linear, "embedding"))
    ('linear', 'embedding')
"""

from __future__ import annotations

from torch import nn

from quantlens.errors import ConfigError
from quantlens.nn.registry import quantized_class_for, quantized_classes, standard_class


def kind_name(cls: type) -> str:
    """The JSON name of a float layer class: ``nn.Linear`` -> ``"linear"``."""
    return cls.__name__.lower()


def _kinds() -> dict[str, type[nn.Module]]:
    return {kind_name(f): f for f in quantized_classes()}


def normalize_modules(modules) -> tuple[str, ...]:
    """``modules=`` as layer-kind names: a class, a name or a sequence of them.

    Raises:
        ConfigError: a kind without a weight-only layer, or none at all.

    Example:
        >>> normalize_modules((nn.Linear, "Conv2d"))
        ('linear', 'conv2d')
    """
    if isinstance(modules, (str, type)):
        modules = (modules,)
    kinds = _kinds()
    out = []
    for m in modules:
        name = kind_name(m) if isinstance(m, type) else str(m).lower()
        if name not in kinds:
            raise ConfigError(
                f"WeightOnly cannot quantize {m!r} layers; modules may name: "
                f"{', '.join(sorted(kinds))} (or their nn classes)"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(
            "modules is empty; give at least one layer kind, e.g. modules=(nn.Linear,)"
        )
    return tuple(out)


DEFAULT_MODULES = ("linear",)  # WeightOnly(modules=None) in a model with a Linear layer
CONV_MODULES = ("conv2d",)  # ... and in one with convolutions and no Linear layer


def default_modules(model: nn.Module) -> tuple[str, ...]:
    """The layer kinds ``WeightOnly(modules=None)`` quantizes in ``model``: Linear, or Conv2d
    in a model with convolutions and no Linear layer at all.

    Example:
        >>> default_modules(nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU()))
        ('conv2d',)
    """
    kinds = {
        kind_name(standard_class(m, quantized_classes()) or type(m))
        for m in model.modules()
        if quantized_class_for(m) is not None
    }
    return (
        CONV_MODULES if "conv2d" in kinds and not kinds & set(DEFAULT_MODULES) else DEFAULT_MODULES
    )
