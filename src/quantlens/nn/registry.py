"""Which quantized layer replaces which float layer (weight-only).

A quantized layer registers itself for the float class it replaces with
``@register_quantized(nn.Linear)``; it must provide ``from_float(module, qweight)`` and
``unsupported_reason(scheme, weight_shape)``. Methods look the replacement up with
:func:`quantized_class_for` instead of an ``isinstance`` chain.
"""

from __future__ import annotations

from torch import nn

_QUANTIZED: dict[type[nn.Module], type[nn.Module]] = {}


def register_quantized(float_cls: type[nn.Module]):
    """Class decorator: the decorated class replaces ``float_cls`` (exact type match)."""

    def deco(qcls):
        _QUANTIZED[float_cls] = qcls
        return qcls

    return deco


def quantized_class_for(module: nn.Module | type) -> type[nn.Module] | None:
    """The weight-only class registered for ``module``'s exact type, or None."""
    cls = module if isinstance(module, type) else type(module)
    return _QUANTIZED.get(cls)


def quantized_classes() -> dict[type[nn.Module], type[nn.Module]]:
    """Every registered ``{float class: quantized class}``."""
    return dict(_QUANTIZED)
