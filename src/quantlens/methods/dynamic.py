"""Dynamic quantization: int8 (or fp16) weights, activations quantized on the fly.

No calibration data: each forward computes the activation ranges of the tokens it sees.
Linear layers become :class:`quantlens.nn.dynamic_linear.DynamicLinear` (per-channel int8
weights, per-token activation scales: the scheme that keeps transformer embeddings within
cosine 0.995 of float); LSTM / GRU layers wide enough for int8 to beat float become
:class:`DynamicRNN` (PyTorch's dynamic kernels, behind :mod:`quantlens.methods.backends.torch_ao`);
narrower ones stay float with the reason in the summary (``Dynamic.min_rnn_hidden``).

Which float layer becomes which quantized one is a registry (:func:`register_dynamic_layer`),
so supporting another layer type is one call, not an edit here.

Example:
    >>> qm = ql.quantize(model, ql.Dynamic())                      # int8, per-token
    >>> qm = ql.quantize(model, ql.Dynamic(dtype="float16"))       # fp16 weights
    >>> qm = ql.quantize(model, ql.Dynamic(modules=("lstm",)))     # only the recurrent layers
    >>> print(qm.quantlens_summary)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from quantlens.errors import ConfigError
from quantlens.methods.backends import torch_ao
from quantlens.methods.base import (
    QuantConfig,
    QuantContext,
    configs_in,
    module_bytes,
    register_method,
)
from quantlens.nn.dynamic_linear import ACTIVATIONS, DTYPES, DynamicLinear
from quantlens.nn.dynamic_rnn import DynamicRNN
from quantlens.nn.registry import standard_class, subclass_reason

_TORCH_DTYPES = {torch.int8: "int8", torch.qint8: "int8", torch.float16: "float16"}


@dataclass(frozen=True)
class Dynamic(QuantConfig):
    """Dynamic quantization: weights stored int8 (or fp16), activations quantized per call.

    Args:
        dtype: ``"int8"`` (int8 weights and int8 GEMMs) or ``"float16"`` (fp16 weights,
            float32 compute: half the size, float accuracy, no speed-up on CPU); the torch
            dtypes ``torch.int8`` / ``torch.qint8`` / ``torch.float16`` are taken too and
            stored as these names (so the config still round-trips to JSON).
        backend: the quantized engine to run on (``"x86"``, ``"fbgemm"``, ``"onednn"``,
            ``"qnnpack"``), set as ``torch.backends.quantized.engine`` when the model is
            quantized or loaded, as ``ql.Static`` does; None (default) keeps the active
            engine. Linear layers run PyTorch's int8 GEMM on VNNI/AMX CPUs whatever the
            engine, fbgemm's kernel under x86/fbgemm, else a float reference; LSTM / GRU
            run the engine's dynamic kernels.
        modules: which layer kinds to quantize, from ``"linear"``, ``"lstm"``, ``"gru"``
            (and any kind added with :func:`register_dynamic_layer`).
        per_channel: one weight scale per output channel (else one per tensor).
        activations: ``"per_token"`` (one scale and zero-point per row of each Linear's
            input: what transformers need) or ``"per_tensor"`` (one per call). LSTM/GRU
            always use PyTorch's per-tensor activation quantization.
        min_rnn_hidden: int8 LSTM / GRU layers with a smaller ``hidden_size`` stay float32,
            recorded with the reason in ``quantlens_summary``: PyTorch's dynamic int8 RNN
            quantizes the hidden state at every step and runs an unfused cell, which costs
            more than small int8 GEMMs save, so it is slower than the fused float kernel
            (``benchmarks/results/int8_rnn.json``). None (default): the sizes from
            which int8 measured faster, :data:`RNN_MIN_HIDDEN` (LSTM 384, GRU 128);
            0 quantizes every LSTM / GRU. fp16 RNNs (a size saving) are always converted.
        skip, overrides: see :class:`quantlens.methods.base.QuantConfig`.

    Example:
        >>> qm = ql.quantize(bert, ql.Dynamic(skip=("pooler.*",)))
    """

    dtype: str = "int8"
    modules: tuple[str, ...] = ("linear", "lstm", "gru")
    per_channel: bool = True
    activations: str = "per_token"
    backend: str | None = None
    min_rnn_hidden: int | None = None

    #: A config dict without ``min_rnn_hidden`` (a checkpoint saved before the field existed)
    #: quantized every LSTM / GRU; loading it must rebuild the same structure.
    MISSING_FIELD_VALUES: ClassVar[dict[str, Any]] = {"min_rnn_hidden": 0}

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.dtype, torch.dtype):
            if self.dtype not in _TORCH_DTYPES:
                raise ConfigError(
                    f"Dynamic dtype {self.dtype} is not supported; choose torch.int8 or "
                    f"torch.float16 (or one of {', '.join(DTYPES)})"
                )
            object.__setattr__(self, "dtype", _TORCH_DTYPES[self.dtype])
        if self.backend is not None and self.backend not in torch_ao.BACKENDS:
            raise ConfigError(
                f"unknown backend {self.backend!r} for Dynamic; choose one of: "
                f"{', '.join(torch_ao.BACKENDS)} (or None for the active engine)"
            )
        modules = (self.modules,) if isinstance(self.modules, str) else tuple(self.modules)
        object.__setattr__(self, "modules", modules)
        if self.dtype not in DTYPES:
            raise ConfigError(
                f"Dynamic dtype {self.dtype!r} is not supported; choose one of {', '.join(DTYPES)}"
            )
        if self.activations not in ACTIVATIONS:
            raise ConfigError(
                f"Dynamic activations {self.activations!r} is not supported; choose one of "
                f"{', '.join(ACTIVATIONS)}"
            )
        if self.min_rnn_hidden is not None and (
            isinstance(self.min_rnn_hidden, bool)
            or not isinstance(self.min_rnn_hidden, int)
            or self.min_rnn_hidden < 0
        ):
            raise ConfigError(
                "Dynamic min_rnn_hidden must be None or an integer >= 0 (0 quantizes every "
                f"LSTM/GRU), got {self.min_rnn_hidden!r}"
            )
        unknown = [m for m in modules if m not in _LAYERS]
        if unknown or not modules:
            raise ConfigError(
                f"Dynamic modules {', '.join(map(repr, unknown)) or '()'} not supported; "
                f"choose from {', '.join(_LAYERS)}"
            )


# --- which float layer becomes which dynamic layer -------------------------------------------


@dataclass(frozen=True)
class DynamicLayer:
    """How one kind of float layer is dynamically quantized.

    Attributes:
        kind: the name used in ``Dynamic(modules=...)``.
        float_types: the float classes it replaces (and their subclasses that keep the
            base's ``forward``: :func:`quantlens.nn.registry.standard_class`).
        convert: ``convert(module, config) -> quantized module``.
        empty: ``empty(module, config) -> quantized structure`` with placeholder weights.
        detail: ``detail(config) -> str`` for the summary.
        keep_float: ``keep_float(module, config) -> reason | None``: a reason to leave this
            layer float (int8 would be slower), or None to quantize it. Deterministic (the
            layer's shape and the config only), so a checkpoint rebuilds the same structure.
    """

    kind: str
    float_types: tuple[type, ...]
    convert: Callable[[nn.Module, Dynamic], nn.Module]
    empty: Callable[[nn.Module, Dynamic], nn.Module]
    detail: Callable[[Dynamic], str]
    keep_float: Callable[[nn.Module, Dynamic], str | None] | None = None


_LAYERS: dict[str, DynamicLayer] = {}


def register_dynamic_layer(layer: DynamicLayer) -> DynamicLayer:
    """Teach ``Dynamic`` a new layer kind (usable in ``modules=`` by its ``kind`` name)."""
    _LAYERS[layer.kind] = layer
    return layer


def _linear_kwargs(config: Dynamic) -> dict:
    return {
        "dtype": config.dtype,
        "per_channel": config.per_channel,
        "activations": config.activations,
    }


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


register_dynamic_layer(
    DynamicLayer(
        "linear",
        (nn.Linear,),
        lambda m, c: DynamicLinear.from_float(m, **_linear_kwargs(c)),
        lambda m, c: DynamicLinear(
            m.in_features, m.out_features, bias=m.bias is not None, **_linear_kwargs(c)
        ),
        _linear_detail,
    )
)

#: Hidden sizes from which PyTorch's dynamic int8 LSTM / GRU measured faster than float32
#: at batch 1 and at batch 450 alike (1 thread, AVX-512 VNNI; an LSTM of 256 was 1.7x at
#: batch 1 but 0.8-1.07x at batch 450, one of 384 1.4x there). Below them the fused float
#: cell wins: the GEMMs are small and cache-resident, and int8 adds a quantization of the
#: hidden state at every step.
RNN_MIN_HIDDEN = {"lstm": 384, "gru": 128}
_SLOWER = "int8 would be slower"


def _rnn_keep_float(module: nn.Module, config: Dynamic) -> str | None:
    """Why an int8 LSTM / GRU this small stays float (None: quantize it)."""
    kind = "lstm" if isinstance(module, nn.LSTM) else "gru"
    least = RNN_MIN_HIDDEN[kind] if config.min_rnn_hidden is None else config.min_rnn_hidden
    if config.dtype != "int8" or module.hidden_size >= least:
        return None
    return (
        f"{_SLOWER}: hidden size {module.hidden_size} < {least}, where PyTorch's dynamic int8 "
        f"{kind.upper()} (per-step activation quantization, unfused cell) runs slower than the "
        "float one; Dynamic(min_rnn_hidden=0) quantizes it anyway"
    )


for _kind, _cls in (("lstm", nn.LSTM), ("gru", nn.GRU)):
    register_dynamic_layer(
        DynamicLayer(
            _kind,
            (_cls,),
            lambda m, c: DynamicRNN.from_float(m, dtype=c.dtype, per_channel=c.per_channel),
            lambda m, c: DynamicRNN.empty(m, dtype=c.dtype),
            _rnn_detail,
            keep_float=_rnn_keep_float,
        )
    )


def _keep_float_reason(module: nn.Module, config: Dynamic, spec: DynamicLayer) -> str | None:
    return spec.keep_float(module, config) if spec.keep_float is not None else None


def _layer_for(module: nn.Module, config: Dynamic) -> DynamicLayer | None:
    for kind in config.modules:
        if standard_class(module, _LAYERS[kind].float_types) is not None:
            return _LAYERS[kind]
    return None


def _any_layer_for(module: nn.Module) -> DynamicLayer | None:
    return next(
        (spec for spec in _LAYERS.values() if standard_class(module, spec.float_types) is not None),
        None,
    )


def _all_float_types() -> tuple[type, ...]:
    return tuple(t for spec in _LAYERS.values() for t in spec.float_types)


# --- apply / rebuild -------------------------------------------------------------------------


def _targets(
    model: nn.Module, ctx: QuantContext
) -> list[tuple[str, nn.Module, Dynamic, DynamicLayer]]:
    """The (name, module, config, layer spec) of every module Dynamic replaces, outermost first."""
    out, taken = [], []
    for name, module in model.named_modules():
        if any(name.startswith(t + ".") or t == "" for t in taken):
            continue
        config = ctx.config_for(name, Dynamic)
        spec = _layer_for(module, config) if config is not None else None
        if spec is not None and _keep_float_reason(module, config, spec) is None:
            out.append((name, module, config, spec))
            taken.append(name)
    return out


def _replace(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at ``name`` in ``model``; the root (``name == ""``) is returned instead."""
    if name == "":
        return new
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    return model


def _use_backend(ctx: QuantContext) -> None:
    """Switch to the engine the Dynamic configs ask for (one per model)."""
    backends = {
        c.backend
        for c in configs_in(ctx.config)
        if isinstance(c, Dynamic) and c.backend is not None
    }
    if len(backends) > 1:
        raise ConfigError(
            "one model can use one quantized engine; these Dynamic configs ask for "
            f"{sorted(backends)}"
        )
    if backends:
        torch_ao.use_engine(backends.pop())


def apply(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """Replace every selected Linear / LSTM / GRU (see :class:`Dynamic`) and record it."""
    _use_backend(ctx)
    targets = _targets(model, ctx)
    for name, module, config, spec in targets:
        new = spec.convert(module, config)
        ctx.summary.add(
            name or "(model)",
            module,
            "quantized",
            method="dynamic",
            detail=spec.detail(config),
            bytes_before=module_bytes(module),
            bytes_after=_state_bytes(new),
        )
        model = _replace(model, name, new)
    if "" not in {t[0] for t in targets}:
        _record_float_layers(model, ctx)
    slow = [
        r.name for r in ctx.summary.records if r.action == "float" and r.reason.startswith(_SLOWER)
    ]
    if slow:
        ctx.summary.note(
            f"{', '.join(slow)} left float because int8 would be slower there; what remains "
            "quantized may not make the model faster (ql.compare measures it)"
        )
    if isinstance(ctx.config, Dynamic):  # (mixed with another method, that method's layers count)
        _warn_if_little(model, ctx, targets, slow)
    return model


def _state_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def _record_float_layers(model: nn.Module, ctx: QuantContext) -> None:
    """Summary records for leaf layers with weights that Dynamic left in float, and why."""
    for name, module in model.named_modules():
        if list(module.children()) or not list(module.parameters(recurse=False)):
            continue
        if ctx.is_skipped(name):
            ctx.record_skip(name, module)
        elif (config := ctx.config_for(name, Dynamic)) is None:
            continue  # another method's layer: that method records it
        elif (spec := _layer_for(module, config)) is not None and (
            why := _keep_float_reason(module, config, spec)
        ):
            ctx.summary.add(name, module, "float", reason=why)
        elif _any_layer_for(module) is not None:
            ctx.summary.add(name, module, "float", reason="its kind is not in Dynamic(modules=...)")
        elif (why := subclass_reason(module, _all_float_types())) is not None:
            ctx.summary.add(name, module, "float", reason=why)
        else:
            hint = (
                " (ql.Static quantizes convolutions)"
                if isinstance(module, nn.modules.conv._ConvNd)
                else ""
            )
            ctx.summary.add(
                name,
                module,
                "float",
                reason=f"Dynamic has no quantized {type(module).__name__}{hint}",
            )


def _heavy_float_params(model: nn.Module) -> dict[str, int]:
    """Parameters of float leaf layers that multiply by a weight matrix (not lookups or norms)."""
    out: dict[str, int] = {}
    for module in model.modules():
        if list(module.children()) or isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            continue
        matrices = sum(
            p.numel() for p in module.parameters(recurse=False) if p.dim() >= 2
        )  # (LSTM: weight_ih_l0, ...)
        if matrices:
            out[type(module).__name__] = out.get(type(module).__name__, 0) + matrices
    return out


def _warn_if_little(model: nn.Module, ctx: QuantContext, targets, slow: list[str]) -> None:
    """Warn when the layers left float (convolutions, RNNs where int8 is slower, ...) outweigh
    the quantized ones."""
    quantized = sum(p.numel() for _, module, _, _ in targets for p in module.parameters())
    heavy = _heavy_float_params(model)
    left = sum(heavy.values())
    if not targets or left <= quantized:
        return
    names = ", ".join(t[0] or "(model)" for t in targets[:3]) + (
        ", ..." if len(targets) > 3 else ""
    )
    text = (
        f"Dynamic quantized only {len(targets)} layer(s) ({names}), "
        f"{100 * quantized / (quantized + left):.0f}% of the weight-matrix parameters; "
        f"{', '.join(sorted(heavy))} stay float"
    )
    if any(k.startswith("Conv") for k in heavy):
        text += (
            " (convolutions cannot be dynamically quantized): use ql.Static with "
            "calibration data instead"
        )
    elif slow:
        text += (
            f" ({', '.join(slow)}: int8 would be slower, see quantlens_summary): the rest alone is "
            "unlikely to be faster than float; keep the float model for speed, or ql.compare to "
            "measure"
        )
    warnings.warn(text, UserWarning, stacklevel=3)
    ctx.summary.note(text)


def rebuild(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """Give a float skeleton the dynamic structure (placeholder weights) for loading a
    checkpoint."""
    _use_backend(ctx)
    for name, module, config, spec in _targets(model, ctx):
        model = _replace(model, name, spec.empty(module, config))
    return model


register_method("dynamic", Dynamic, apply=apply, rebuild=rebuild, order=60)
