"""Which quantized layer replaces which float layer (weight-only), and which standard
layer a model's own subclass stands for (every method).

A quantized layer registers itself for the float class it replaces with
``@register_quantized(nn.Linear)``; it must provide ``from_float(module, qweight)`` and
``unsupported_reason(scheme, weight_shape)``. Methods look the replacement up with
:func:`quantized_class_for` instead of an ``isinstance`` chain.

Subclasses: models often subclass the standard layers (``class FalconLinear(nn.Linear)``)
to add a method or an attribute. :func:`standard_class` treats such a layer as its standard
base when the subclass keeps the base's computation (no override of ``forward`` or
``_conv_forward``), so every method quantizes it like the base; a subclass that overrides
them computes something quantlens cannot know, and :func:`subclass_reason` says so.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

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
    if not changed:
        return None
    return (
        f"{cls.__name__} subclasses {base.__name__} but overrides {' and '.join(changed)}: "
        "quantlens cannot know what it computes; left float"
    )


_QUANTIZED: dict[type[nn.Module], type[nn.Module]] = {}


def register_quantized(float_cls: type[nn.Module]):
    """Class decorator: the decorated class replaces ``float_cls`` (and its subclasses that
    keep its ``forward``)."""

    def deco(qcls):
        _QUANTIZED[float_cls] = qcls
        return qcls

    return deco


def quantized_class_for(module: nn.Module | type) -> type[nn.Module] | None:
    """The weight-only class registered for ``module``'s type (or the standard class it
    subclasses, see :func:`standard_class`), or None."""
    base = standard_class(module, _QUANTIZED)
    return _QUANTIZED.get(base) if base is not None else None


def quantized_classes() -> dict[type[nn.Module], type[nn.Module]]:
    """Every registered ``{float class: quantized class}``."""
    return dict(_QUANTIZED)
