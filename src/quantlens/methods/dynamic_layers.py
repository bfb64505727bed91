"""Which float layer :class:`~quantlens.methods.dynamic.Dynamic` turns into which dynamic
layer: a registry of layer kinds (the names ``Dynamic(modules=...)`` takes).

Supporting another layer type is one :func:`register_dynamic_layer` call. Registered here:
``"linear"`` (:class:`~quantlens.nn.dynamic_linear.DynamicLinear`, left float below
:data:`LINEAR_MIN_OUT` outputs in a model with an LSTM / GRU), ``"lstm"`` / ``"gru"``
(:class:`~quantlens.nn.dynamic_rnn.DynamicRNN`, left float below
:data:`RNN_MIN_HIDDEN`) and ``"conv2d"`` (:class:`~quantlens.nn.dynamic_conv.DynamicConv2d`).

Example:
    >>> default_modules(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    ('conv2d',)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from torch import nn

# imported for their registration in the layer registry's "dynamic" family
from quantlens.nn import dynamic_conv, dynamic_linear, dynamic_rnn  # noqa: F401
from quantlens.nn.registry import DynamicSpec, quantized_class_for, standard_class

if TYPE_CHECKING:
    from quantlens.methods.dynamic import Dynamic, DynamicDtype


@dataclass(frozen=True)
class DynamicLayer:
    """How one kind of float layer is dynamically quantized.

    Attributes:
        kind: the name used in ``Dynamic(modules=...)``.
        float_types: the float classes it replaces (and their subclasses that keep the
            base's ``forward``: :func:`quantlens.nn.registry.standard_class`).
        detail: ``detail(config) -> str`` for the summary.
        keep_float: ``keep_float(module, config, recurrent) -> reason | None``: a reason to
            leave this layer float (int8 would be slower), or None to quantize it;
            ``recurrent`` says whether the model has an LSTM / GRU. Deterministic (the
            layer's shape, the model's layer kinds and the config only), so a checkpoint
            rebuilds the same structure.
    """

    kind: str
    float_types: tuple[type, ...]
    detail: Callable[[Dynamic], str]
    keep_float: Callable[[nn.Module, Dynamic, bool], str | None] | None = None


_LAYERS: dict[str, DynamicLayer] = {}


def register_dynamic_layer(layer: DynamicLayer) -> DynamicLayer:
    """Teach ``Dynamic`` a new layer kind (usable in ``modules=`` by its ``kind`` name)."""
    _LAYERS[layer.kind] = layer
    return layer


def _spec(config: Dynamic) -> DynamicSpec:
    return DynamicSpec(
        dtype=cast("DynamicDtype", config.dtype),
        per_channel=config.per_channel,
        activations=config.activations,
    )


def convert_layer(module: nn.Module, config: Dynamic) -> nn.Module:
    """The dynamic layer the layer registry holds for ``module``, built from its weights."""
    return _registered(module).from_float(module, _spec(config))


def empty_layer(module: nn.Module, config: Dynamic) -> nn.Module:
    """The structure :func:`convert_layer` builds, with placeholder weights (for loading)."""
    return _registered(module).empty(module, _spec(config))


def _registered(module: nn.Module) -> Any:  # a layer class with from_float / empty
    cls = quantized_class_for(module, "dynamic")
    if cls is None:  # a kind registered here without its layer class in the registry
        raise TypeError(f"no dynamic layer is registered for {type(module).__name__}")
    return cls


SLOWER = "int8 would be slower"


def _linear_detail(config: Dynamic) -> str:
    if config.dtype == "float16":
        return "fp16 weights, fp32 compute"
    weights = "per-channel" if config.per_channel else "per-tensor"
    return f"int8 {weights} weights, {config.activations.replace('_', '-')} int8 activations"


def _rnn_detail(config: Dynamic) -> str:
    if config.dtype == "float16":
        return "fp16 weights (PyTorch dynamic RNN)"
    return (
        f"int8 {'per-channel' if config.per_channel else 'per-tensor'} weights, per-tensor "
        "activations (PyTorch dynamic RNN)"
    )


#: Output features below which Dynamic keeps the Linear layers of a model with an LSTM / GRU
#: (its classifier head) float; see ``Dynamic.min_linear_out``. So narrow a GEMM does not pay
#: for quantizing each input row (64 to 1024 inputs; 1 thread, AVX-512): on the PyTorch int8
#: path it measured slower at every batch (0.15-0.2x float at batch 1, 0.3-0.8x at 450 and
#: 4096 rows for 10 or 32 outputs; 0.9-1.15x from 64); the compiled kernel is 0.5-0.65x at
#: batch 1 and saves ~10-50 us at 450 rows, next to a recurrence of milliseconds.
LINEAR_MIN_OUT = 64


def min_linear_out(config: Dynamic, recurrent: bool) -> int:
    """The ``out_features`` below which ``config`` keeps an int8 Linear float: the field, or
    by default :data:`LINEAR_MIN_OUT` in a model with an LSTM / GRU and 0 elsewhere."""
    if config.min_linear_out is not None:
        return config.min_linear_out
    return LINEAR_MIN_OUT if recurrent else 0


def _linear_keep_float(module: nn.Module, config: Dynamic, recurrent: bool) -> str | None:
    """Why an int8 Linear this narrow stays float (None: quantize it)."""
    least = min_linear_out(config, recurrent)
    out = cast(nn.Linear, module).out_features
    if config.dtype != "int8" or out >= least:
        return None
    return (
        f"{SLOWER}: {out} output features < {least}, too few for the int8 GEMM to pay for "
        "quantizing each input row (at batch 1 at least); Dynamic(min_linear_out=0) quantizes "
        "it anyway"
    )


register_dynamic_layer(
    DynamicLayer(
        "linear",
        (nn.Linear,),
        _linear_detail,
        keep_float=_linear_keep_float,
    )
)

#: Hidden sizes from which PyTorch's dynamic int8 LSTM / GRU measured faster than float32
#: at batch 1 and at batch 450 alike (1 thread, AVX-512 VNNI; an LSTM of 256 was 1.7x at
#: batch 1 but 0.8-1.07x at batch 450, one of 384 1.4x there). Below them the fused float
#: cell wins: the GEMMs are small and cache-resident, and int8 adds a quantization of the
#: hidden state at every step.
RNN_MIN_HIDDEN = {"lstm": 384, "gru": 128}


def _rnn_keep_float(module: nn.Module, config: Dynamic, recurrent: bool) -> str | None:
    """Why an int8 LSTM / GRU this small stays float (None: quantize it)."""
    kind = "lstm" if isinstance(module, nn.LSTM) else "gru"
    least = RNN_MIN_HIDDEN[kind] if config.min_rnn_hidden is None else config.min_rnn_hidden
    hidden = cast(nn.RNNBase, module).hidden_size
    if config.dtype != "int8" or hidden >= least:
        return None
    return (
        f"{SLOWER}: hidden size {hidden} < {least}, where PyTorch's dynamic int8 "
        f"{kind.upper()} (per-step activation quantization, unfused cell) runs slower than the "
        "float one; Dynamic(min_rnn_hidden=0) quantizes it anyway"
    )


for _kind, _cls in (("lstm", nn.LSTM), ("gru", nn.GRU)):
    register_dynamic_layer(
        DynamicLayer(
            _kind,
            (_cls,),
            _rnn_detail,
            keep_float=_rnn_keep_float,
        )
    )


def _conv_keep_float(module: nn.Module, config: Dynamic, recurrent: bool) -> str | None:
    if config.dtype == "int8":
        return None
    return f"Dynamic(dtype={config.dtype!r}) has no {config.dtype} convolution; left float"


register_dynamic_layer(
    DynamicLayer(
        "conv2d",
        (nn.Conv2d,),
        lambda c: (
            f"int8 {'per-channel' if c.per_channel else 'per-tensor'} weights, per-tensor uint8 "
            "activations (oneDNN int8 convolution)"
        ),
        keep_float=_conv_keep_float,
    )
)

#: The layer kinds ``Dynamic()`` quantizes by default.
DEFAULT_MODULES = ("linear", "lstm", "gru")
#: What ``Dynamic()`` quantizes in a model with no layer of :data:`DEFAULT_MODULES`.
CONV_ONLY_MODULES = ("conv2d",)


def default_modules(model: nn.Module) -> tuple[str, ...]:
    """The layer kinds ``Dynamic(modules=None)`` quantizes in ``model``: :data:`DEFAULT_MODULES`,
    or :data:`CONV_ONLY_MODULES` when the model has no Linear / LSTM / GRU layer at all
    (skipped ones count: skipping a model's Linear layers does not turn on its convolutions).

    Example:
        >>> default_modules(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
        ('conv2d',)
    """
    types = tuple(t for kind in DEFAULT_MODULES for t in _LAYERS[kind].float_types)
    if any(standard_class(m, types) is not None for m in model.modules()):
        return DEFAULT_MODULES
    return CONV_ONLY_MODULES


def _kinds(config: Dynamic, default: tuple[str, ...]) -> tuple[str, ...]:
    return default if config.modules is None else config.modules


def has_recurrent(model: nn.Module) -> bool:
    """Whether ``model`` has an LSTM / GRU layer (one Dynamic would quantize)."""
    types = tuple(t for kind in ("lstm", "gru") for t in _LAYERS[kind].float_types)
    return any(standard_class(m, types) is not None for m in model.modules())


def outweigh(model: nn.Module, names: list[str], others: list[nn.Module]) -> bool:
    """Whether the layers ``names`` of ``model`` hold at least as many parameters as
    ``others`` (the layers left float for speed vs the quantized ones)."""
    layers = dict(model.named_modules())
    left = sum(p.numel() for n in names if n in layers for p in layers[n].parameters())
    return left >= sum(p.numel() for m in others for p in m.parameters())


def keep_float_reason(
    module: nn.Module, config: Dynamic, spec: DynamicLayer, recurrent: bool = False
) -> str | None:
    """Why ``spec``'s rule leaves ``module`` float under ``config`` (None: quantize it);
    ``recurrent``: whether the model has an LSTM / GRU (:func:`has_recurrent`)."""
    if spec.keep_float is None:
        return None
    return spec.keep_float(module, config, recurrent)


def layer_for(
    module: nn.Module, config: Dynamic, default: tuple[str, ...] = DEFAULT_MODULES
) -> DynamicLayer | None:
    for kind in _kinds(config, default):
        if standard_class(module, _LAYERS[kind].float_types) is not None:
            return _LAYERS[kind]
    return None


def any_layer_for(module: nn.Module) -> DynamicLayer | None:
    return next(
        (spec for spec in _LAYERS.values() if standard_class(module, spec.float_types) is not None),
        None,
    )


def all_float_types() -> tuple[type, ...]:
    return tuple(t for spec in _LAYERS.values() for t in spec.float_types)


def layer_kinds() -> dict[str, DynamicLayer]:
    """Every registered layer kind by name."""
    return dict(_LAYERS)
