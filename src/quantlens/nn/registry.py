"""Which quantized layer replaces which float layer, per family, and which standard layer a
model's own subclass stands for (every method).

The layer registry. A quantized layer registers itself for the float class it replaces,
in its family, with ``@register_quantized(nn.Linear)`` (family ``"weight_only"``) or
``@register_quantized(nn.Linear, family="dynamic")``. Every registered class builds itself
from a float layer in two ways, the same for all (:class:`QuantizedLayer`):

- ``from_float(module, spec)``: the quantized layer holding ``module``'s weights;
- ``empty(module, spec)``: the same structure with placeholder buffers, for a checkpoint's
  state dict to fill;

where ``spec`` is what the family quantizes with: for ``"weight_only"`` the quantized
weight (a :class:`~quantlens.core.qtensor.QTensor`, whose scheme an algorithm chose) in
``from_float`` and its :class:`~quantlens.core.scheme.QScheme` in ``empty``; for
``"dynamic"`` a :class:`~quantlens.nn.dynamic_linear.DynamicSpec` in both. Weight-only
classes also provide ``unsupported_reason(scheme, weight_shape)``. Methods look the class up
with :func:`quantized_class_for` and call these instead of an ``isinstance`` chain; a new
quantized layer inherits the conformance test in tests/nn/test_layer_registry.py.

Subclasses: models often subclass the standard layers (``class FalconLinear(nn.Linear)``)
to add a method or an attribute. :func:`standard_class` treats such a layer as its standard
base when the subclass keeps the base's computation (no override of ``forward`` or
``_conv_forward``), so every method quantizes it like the base; a subclass that overrides
them computes something quantlens cannot know, and :func:`subclass_reason` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from torch import nn

LayerFamily = Literal["weight_only", "dynamic"]
_Q = TypeVar("_Q", bound=type)

_COMPUTE = ("forward", "_conv_forward")  # the methods whose override changes what a layer computes


def _overrides(cls: type, base: type) -> list[str]:
    return [name for name in _COMPUTE if getattr(cls, name, None) is not getattr(base, name, None)]


def _base_in(cls: type, classes: Iterable[type]) -> type | None:
    classes = tuple(classes)
    return next((base for base in cls.__mro__[1:] if base in classes), None)


def standard_class(module: nn.Module | type, classes: Iterable[type]) -> type | None:
    """The class among ``classes`` that ``module`` is, or that it subclasses without
    overriding ``forward`` / ``_conv_forward``; None otherwise.

    Args:
        module: a layer or a layer class.
        classes: the standard classes a method quantizes.

    Returns:
        The standard class to quantize ``module`` as, or None.

    Example:
        >>> class FalconLinear(nn.Linear): pass
        >>> standard_class(FalconLinear(4, 4), [nn.Linear])
        <class 'torch.nn.modules.linear.Linear'>
    """
    cls = module if isinstance(module, type) else type(module)
    classes = tuple(classes)
    if cls in classes:
        return cls
    base = _base_in(cls, classes)
    return base if base is not None and not _overrides(cls, base) else None


def subclass_reason(module: nn.Module | type, classes: Iterable[type]) -> str | None:
    """Why a subclass of one of ``classes`` is left float (it overrides what the layer
    computes), or None when ``module`` is not such a subclass.

    Example:
        >>> class Scaled(nn.Linear):
        ...     def forward(self, x): return 2 * super().forward(x)
        >>> subclass_reason(Scaled(4, 4), [nn.Linear])  # doctest: +ELLIPSIS
        'Scaled subclasses Linear but overrides forward: quantlens cannot know ...; left float'
    """
    cls = module if isinstance(module, type) else type(module)
    base = _base_in(cls, classes) if cls not in tuple(classes) else None
    changed = _overrides(cls, base) if base is not None else []
    if base is None or not changed:
        return None
    return (
        f"{cls.__name__} subclasses {base.__name__} but overrides {' and '.join(changed)}: "
        "quantlens cannot know what it computes; left float"
    )


@dataclass(frozen=True)
class DynamicSpec:
    """How the ``"dynamic"`` family quantizes a layer (what ``ql.Dynamic`` passes down).

    Args:
        dtype: ``"int8"`` weights (int8 GEMMs, activations quantized per call) or
            ``"float16"`` weights (float compute).
        per_channel: int8 only; one weight scale per output channel (else per tensor).
        activations: int8 Linear only; ``"per_token"`` or ``"per_tensor"`` activation scales.

    Example:
        >>> DynamicLinear.from_float(nn.Linear(8, 4), DynamicSpec(dtype="float16"))
    """

    dtype: Literal["int8", "float16"] = "int8"
    per_channel: bool = True
    activations: Literal["per_token", "per_tensor"] = "per_token"


class QuantizedLayer(Protocol):
    """What every class in the layer registry provides (see the module docstring)."""

    @classmethod
    def from_float(cls, module: nn.Module, spec: Any) -> nn.Module:
        """The quantized layer holding ``module``'s weights, quantized as ``spec`` says."""
        ...

    @classmethod
    def empty(cls, module: nn.Module, spec: Any) -> nn.Module:
        """The quantized structure of ``module`` with placeholder buffers."""
        ...


_QUANTIZED: dict[str, dict[type[nn.Module], type[Any]]] = {"weight_only": {}, "dynamic": {}}


def register_quantized(
    float_cls: type[nn.Module], family: LayerFamily = "weight_only"
) -> Callable[[_Q], _Q]:
    """Class decorator: the decorated class replaces ``float_cls`` (and its subclasses that
    keep its ``forward``) in ``family``.

    Args:
        float_cls: the float layer class it replaces.
        family: the method family that uses it.

    Returns:
        The decorator (it returns the class unchanged).

    Example:
        >>> @register_quantized(nn.Linear)
        ... class QLinear(PackedWeight): ...
    """

    def deco(qcls: _Q) -> _Q:
        _QUANTIZED[family][float_cls] = qcls
        return qcls

    return deco


def quantized_class_for(
    module: nn.Module | type, family: LayerFamily = "weight_only"
) -> type[Any] | None:
    """The class registered in ``family`` for ``module``'s type (or the standard class it
    subclasses, see :func:`standard_class`), or None.

    Example:
        >>> quantized_class_for(nn.Linear(4, 4))
        <class 'quantlens.nn.qlinear.QLinear'>
    """
    registered = _QUANTIZED[family]
    base = standard_class(module, registered)
    return registered.get(base) if base is not None else None


def quantized_classes(
    family: LayerFamily = "weight_only",
) -> dict[type[nn.Module], type[Any]]:
    """Every registered ``{float class: quantized class}`` of ``family``.

    Example:
        >>> sorted(c.__name__ for c in quantized_classes())
        ['Conv2d', 'Embedding', 'Linear']
    """
    return dict(_QUANTIZED[family])
