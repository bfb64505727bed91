"""Dynamic quantization: int8 (or fp16) weights, activations quantized on the fly.

No calibration data: each forward computes the activation ranges of the tokens it sees.
Linear layers become :class:`~quantlens.nn.dynamic_linear.DynamicLinear` (per-channel int8
weights, per-token activation scales), wide enough LSTM / GRU layers :class:`DynamicRNN`, and
Conv2d layers :class:`~quantlens.nn.dynamic_conv.DynamicConv2d` in a model with no Linear /
LSTM / GRU (or when ``modules`` names ``"conv2d"``). Layers int8 would make slower stay float
with the reason in the summary (``Dynamic.min_rnn_hidden``, ``Dynamic.min_linear_out``).

Which float layer becomes which quantized one is a registry
(:mod:`quantlens.methods.dynamic_layers`, :func:`register_dynamic_layer`), so supporting
another layer type is one call, not an edit here.

Example:
    >>> qm = ql.quantize(model, ql.Dynamic())                      # int8, per-token
    >>> qm = ql.quantize(model, ql.Dynamic(dtype="float16"))       # fp16 weights
    >>> qm = ql.quantize(model, ql.Dynamic(modules=("lstm",)))     # only the recurrent layers
    >>> qm = ql.quantize(cnn, ql.Dynamic(modules=("linear", "conv2d")))  # convolutions too
    >>> print(qm.quantlens_summary)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from quantlens.errors import ConfigError
from quantlens.methods import smoothing
from quantlens.methods.backends import torch_ao
from quantlens.methods.backends.torch_ao import Backend
from quantlens.methods.base import (
    QuantConfig,
    QuantContext,
    configs_in,
    module_bytes,
    register_method,
)
from quantlens.methods.dynamic_layers import (
    CONV_ONLY_MODULES,
    DEFAULT_MODULES,
    LINEAR_MIN_OUT,
    RNN_MIN_HIDDEN,
    SLOWER,
    DynamicLayer,
    all_float_types,
    any_layer_for,
    convert_layer,
    default_modules,
    empty_layer,
    has_recurrent,
    keep_float_reason,
    layer_for,
    layer_kinds,
    outweigh,
    register_dynamic_layer,
)
from quantlens.methods.dynamic_notes import warn_if_little
from quantlens.methods.lm_head import head_asked, head_reason, output_heads
from quantlens.nn.dynamic_linear import ACTIVATIONS, DTYPES
from quantlens.nn.registry import subclass_reason

DynamicDtype = Literal["int8", "float16"]
"""The weight storage of Dynamic: int8 (int8 GEMMs) or float16 (float32 compute)."""
ActivationScales = Literal["per_token", "per_tensor"]
"""How Dynamic quantizes a Linear's input: one scale per row (token) or one per call."""
_TORCH_DTYPES: dict[torch.dtype, DynamicDtype] = {
    torch.int8: "int8",
    torch.qint8: "int8",
    torch.float16: "float16",
}


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
        modules: which layer kinds to quantize, from ``"linear"``, ``"lstm"``, ``"gru"``,
            ``"conv2d"`` (and any kind added with :func:`register_dynamic_layer`). None
            (default): :data:`DEFAULT_MODULES` (Linear, LSTM, GRU); in a model that has none
            of those, its Conv2d layers (:data:`CONV_ONLY_MODULES`; the summary says so).
            Convolutions are not in the default otherwise: on a CNN with a Linear head,
            quantizing them on the fly per call measured slower than the Linear-only
            default at small inputs (``benchmarks/results/dynamic_conv.json``).
        per_channel: one weight scale per output channel (else one per tensor).
        activations: ``"per_token"`` (one scale and zero-point per row of each Linear's
            input: what transformers need) or ``"per_tensor"`` (one per call). LSTM/GRU
            and Conv2d always quantize their input per tensor.
        min_rnn_hidden: int8 LSTM / GRU layers with a smaller ``hidden_size`` stay float32,
            recorded with the reason in ``quantlens_summary``: PyTorch's dynamic int8 RNN
            quantizes the hidden state at every step and runs an unfused cell, which costs
            more than small int8 GEMMs save, so it is slower than the fused float kernel
            (``benchmarks/results/int8_rnn.json``). None (default): the sizes from
            which int8 measured faster, :data:`RNN_MIN_HIDDEN` (LSTM 384, GRU 128);
            0 quantizes every LSTM / GRU. fp16 RNNs (a size saving) are always converted.
        min_linear_out: int8 Linear layers with fewer ``out_features`` stay float32 (the
            reason in ``quantlens_summary``): too narrow a GEMM to pay for quantizing each
            input row (slower at batch 1; :data:`LINEAR_MIN_OUT` has the figures). None:
            :data:`LINEAR_MIN_OUT` (64) in a model with an LSTM / GRU (its head), else 0
            (where the Linear layers are usually all Dynamic quantizes); 0: every Linear.
        smoothquant: None (default), a migration strength ``alpha`` in [0, 1] (0.5 is the
            usual) or ``"auto"`` (searched per group of Linears on calibration data): before
            int8, move activation outliers into the weights with SmoothQuant
            (:mod:`quantlens.methods.smoothing`); needs ``calib_data``.
        lm_head: quantize a causal language model's output head too (False, the default:
            it stays float, as in :class:`~quantlens.methods.weight_only.WeightOnly`).
        skip, overrides: see :class:`quantlens.methods.base.QuantConfig`.

    Example:
        >>> qm = ql.quantize(bert, ql.Dynamic(skip=("pooler.*",)))
    """

    dtype: DynamicDtype | torch.dtype = "int8"
    modules: tuple[str, ...] | None = None
    per_channel: bool = True
    activations: ActivationScales = "per_token"
    backend: Backend | None = None
    min_rnn_hidden: int | None = None
    smoothquant: float | str | None = None
    min_linear_out: int | None = None
    lm_head: bool = False

    #: A config dict without ``min_rnn_hidden`` / ``min_linear_out`` / ``lm_head`` (a checkpoint
    #: saved before the field existed) quantized every LSTM / GRU / Linear, the LM head
    #: included; loading it must rebuild the same structure.
    MISSING_FIELD_VALUES: ClassVar[dict[str, Any]] = {
        "min_rnn_hidden": 0,
        "min_linear_out": 0,
        "lm_head": True,
    }

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
        object.__setattr__(self, "smoothquant", smoothing.check_alpha(self.smoothquant, "Dynamic"))
        modules = self.modules
        if modules is not None:
            modules = (modules,) if isinstance(modules, str) else tuple(modules)
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
        for field, what in (("min_rnn_hidden", "LSTM/GRU"), ("min_linear_out", "Linear")):
            value = getattr(self, field)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ConfigError(
                    f"Dynamic {field} must be None or an integer >= 0 (0 quantizes every "
                    f"{what}), got {value!r}"
                )
        unknown = [m for m in modules or () if m not in layer_kinds()]
        if unknown or modules == ():
            raise ConfigError(
                f"Dynamic modules {', '.join(map(repr, unknown)) or '()'} not supported; "
                f"choose from {', '.join(layer_kinds())}"
            )


# --- apply / rebuild -------------------------------------------------------------------------


def _targets(
    model: nn.Module, ctx: QuantContext
) -> list[tuple[str, nn.Module, Dynamic, DynamicLayer]]:
    """The (name, module, config, layer spec) of every module Dynamic replaces, outermost first."""
    out: list[tuple[str, nn.Module, Dynamic, DynamicLayer]] = []
    taken: list[str] = []
    default, recurrent = default_modules(model), has_recurrent(model)
    heads = output_heads(model)
    for name, module in model.named_modules():
        if any(name.startswith(t + ".") or t == "" for t in taken):
            continue
        config = ctx.config_for(name, Dynamic)
        if config is None or (id(module) in heads and not head_asked(ctx.config, name, config)):
            continue
        spec = layer_for(module, config, default)
        if spec is not None and keep_float_reason(module, config, spec, recurrent) is None:
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
    default, recurrent = default_modules(model), has_recurrent(model)
    targets = _targets(model, ctx)
    _smooth(model, targets, ctx)
    if default == CONV_ONLY_MODULES and any(
        c.modules is None for c in configs_in(ctx.config) if isinstance(c, Dynamic)
    ):
        ctx.summary.note(
            "the model has no Linear, LSTM or GRU layer: Dynamic quantized its Conv2d layers "
            "(int8 weights, each call's input quantized per tensor; each int8 call has a fixed "
            "cost, so on small feature maps it can be slower than float: ql.compare measures it); "
            "modules=... chooses"
        )
    for name, module, config, spec in targets:
        new = convert_layer(module, config)
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
        _record_float_layers(model, ctx, default, recurrent)
    slow = [
        r.name for r in ctx.summary.records if r.action == "float" and r.reason.startswith(SLOWER)
    ]
    if slow and outweigh(model, slow, [m for _, m, _, _ in targets]):  # (not for a narrow head)
        ctx.summary.note(
            f"{', '.join(slow)} left float because int8 would be slower there; what remains "
            "quantized may not make the model faster (ql.compare measures it)"
        )
    if isinstance(ctx.config, Dynamic):  # (mixed with another method, that method's layers count)
        warn_if_little(model, ctx, targets, slow)
    return model


def _smooth(model: nn.Module, targets, ctx: QuantContext) -> None:
    """SmoothQuant the int8 Linears whose config asks for it, one pass per setting."""
    settings: dict[tuple, list[str]] = {}
    for name, module, config, _ in targets:
        if (
            config.smoothquant is not None
            and config.dtype == "int8"
            and isinstance(module, nn.Linear)
        ):
            key = (config.smoothquant, config.activations == "per_token")
            settings.setdefault(key, []).append(name)
    for (alpha, per_token), names in settings.items():
        smoothing.smooth(model, names, ctx, alpha, per_token=per_token, explicit=True)


def _state_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def _record_float_layers(
    model: nn.Module, ctx: QuantContext, default: tuple[str, ...], recurrent: bool
) -> None:
    """Summary records for leaf layers with weights that Dynamic left in float, and why
    (``recurrent``: whether the float model had an LSTM / GRU)."""
    heads = output_heads(model)
    for name, module in model.named_modules():
        if list(module.children()) or not list(module.parameters(recurse=False)):
            continue
        if ctx.is_skipped(name):
            ctx.record_skip(name, module)
        elif (config := ctx.config_for(name, Dynamic)) is None:
            continue  # another method's layer: that method records it
        elif heads.get(id(module)) == "head" and not head_asked(ctx.config, name, config):
            ctx.summary.add(name, module, "float", reason=head_reason("head"))
        elif (spec := layer_for(module, config, default)) is not None and (
            why := keep_float_reason(module, config, spec, recurrent)
        ):
            ctx.summary.add(name, module, "float", reason=why)
        elif (other := any_layer_for(module)) is not None:
            why = f"its kind ({other.kind}) is not in Dynamic(modules=...)"
            if other.kind == "conv2d":
                why += (
                    ": add 'conv2d' to quantize it per call, or ql.Static quantizes "
                    "convolutions with calibration data"
                )
            ctx.summary.add(name, module, "float", reason=why)
        elif (why := subclass_reason(module, all_float_types())) is not None:
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


def rebuild(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """Give a float skeleton the dynamic structure (placeholder weights) for loading a
    checkpoint."""
    _use_backend(ctx)
    for name, module, config, spec in _targets(model, ctx):
        model = _replace(model, name, empty_layer(module, config))
    return model


register_method("dynamic", Dynamic, apply=apply, rebuild=rebuild, order=60)

__all__ = [
    "CONV_ONLY_MODULES",
    "DEFAULT_MODULES",
    "LINEAR_MIN_OUT",
    "RNN_MIN_HIDDEN",
    "Dynamic",
    "DynamicLayer",
    "default_modules",
    "register_dynamic_layer",
]
