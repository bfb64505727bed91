"""Custom modules for Static and QAT: a float class that torch.ao cannot quantize on its
own, with the observed and quantized classes that replace it (:func:`register_custom_module`).

Example:
    >>> register_custom_module(MyAttention, ObservedMyAttention, QuantizedMyAttention)
"""

from __future__ import annotations

from typing import Any, cast

from torch import nn

from quantlens.errors import InputError

__all__ = [
    "attach_custom_qconfigs",
    "custom_modules",
    "register_custom_module",
    "unregister_custom_module",
]

_CUSTOM_MODULES: dict[type, tuple[type, type, type]] = {}


def register_custom_module(float_cls: type, observed_cls: type, quantized_cls: type) -> None:
    """Give Static/QAT your own quantized replacement for a module type.

    ``observed_cls.from_float(float_module)`` must return a module that records what it
    needs (its inputs reach it quantization-observed); ``quantized_cls.from_observed(observed)``
    returns the int8 module, which receives and returns quantized tensors. Modules of
    ``float_cls`` are not traced into. Wraps torch.ao's custom module configuration.

    Example:
        >>> ql.register_custom_module(MyAttention, ObservedMyAttention, QuantizedMyAttention)
        >>> qm = ql.quantize(model, ql.Static(), calib_data=calib)
    """
    for cls in (float_cls, observed_cls, quantized_cls):
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise InputError(f"register_custom_module takes nn.Module classes, got {cls!r}")
    if not hasattr(observed_cls, "from_float") or not hasattr(quantized_cls, "from_observed"):
        raise InputError(
            "observed_cls needs a from_float classmethod and quantized_cls a from_observed "
            "classmethod"
        )
    _CUSTOM_MODULES[float_cls] = (float_cls, observed_cls, quantized_cls)


def _observed_adapter(observed_cls: type) -> type:
    """``observed_cls`` whose ``from_float`` also copies the float module's ``qconfig``
    (torch.ao reads it from the observed module at convert time)."""

    def from_float(cls, module):
        observed = cast(Any, observed_cls).from_float(module)  # checked at registration
        if getattr(observed, "qconfig", None) is None:
            observed.qconfig = getattr(module, "qconfig", None)
        return observed

    return type(observed_cls.__name__, (observed_cls,), {"from_float": classmethod(from_float)})


def unregister_custom_module(float_cls: type) -> None:
    """Undo :func:`register_custom_module`."""
    _CUSTOM_MODULES.pop(float_cls, None)


def custom_modules() -> list[tuple[type, type, type]]:
    """The registered ``(float_cls, observed_cls, quantized_cls)`` triples."""
    return list(_CUSTOM_MODULES.values())


def attach_custom_qconfigs(model: nn.Module, mapping) -> list[tuple[type, type, type]]:
    """Give registered custom modules their qconfig; the prepare-time class triples."""
    for name, module in model.named_modules():
        if type(module) in _CUSTOM_MODULES:
            module.qconfig = mapping.module_name_qconfigs.get(name, mapping.global_qconfig)
    return [(f, _observed_adapter(o), q) for f, o, q in _CUSTOM_MODULES.values()]
