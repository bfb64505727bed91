"""torch.fx graph mode: prepare (observers or fake quantization, fusion) and convert.

``prepare_fx`` / ``prepare_qat_fx`` / ``convert_fx`` with float islands for modules torch.fx
cannot trace (:func:`find_untraceable` names the smallest culprits) and user-registered
custom module replacements; plus the QAT training controls that act on the modules these
produce (:func:`freeze_bn`, :func:`freeze_observers`). Tested on torch 2.13.0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
from torch import nn

from quantlens.errors import error_line
from quantlens.methods.backends.torch_ao._upstream import quiet
from quantlens.methods.backends.torch_ao.observers import CoreFakeQuantize


def _backend_config(backend: str):
    with quiet():
        from torch.ao.quantization import backend_config as bc
        from torch.ao.quantization.backend_config.x86 import get_x86_backend_config

        return {"x86": get_x86_backend_config, "onednn": bc.get_onednn_backend_config}.get(
            backend, bc.get_native_backend_config
        )()


def find_untraceable(model: nn.Module, leaves: Iterable[str] = ()) -> dict[str, str]:
    """Modules whose own ``forward`` torch.fx cannot trace: ``{name: error}``.

    Searches bottom-up: a module is reported only if it still fails with its untraceable
    children treated as leaves, so the report names the smallest culprits. The root is
    reported under ``""``. ``leaves`` are module names already kept out of tracing.
    """
    found: dict[str, str] = {}
    given = set(leaves)

    def visit(module: nn.Module, prefix: str) -> None:
        name = prefix.rstrip(".")
        if name in given or (
            name
            and torch.fx.Tracer().is_leaf_module(module, name)
            and not isinstance(module, (nn.ModuleList, nn.ModuleDict))
        ):
            return  # torch.nn's own layers are never traced into (its containers are never called)
        for name, child in module.named_children():
            visit(child, f"{prefix}{name}.")
        ids = {id(m) for n, m in model.named_modules() if n in found or n in given}
        error = _trace_error(module, ids)
        if error is not None:
            found[prefix.rstrip(".")] = error

    visit(model, "")
    return found


def _trace_error(module: nn.Module, leaves: set[int]) -> str | None:
    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return id(m) in leaves or super().is_leaf_module(m, qualname)

    try:
        _Tracer().trace(module)
    except Exception as exc:  # noqa: BLE001 - tracing fails with many exception types
        return f"{type(exc).__name__}: {error_line(exc, 160)}"
    return None


def prepare(
    model: nn.Module,
    mapping,
    example_inputs: tuple,
    *,
    backend: str,
    qat: bool = False,
    leaf_names: Iterable[str] = (),
    custom_modules: Iterable[tuple[type, type, type]] = (),
) -> torch.fx.GraphModule:
    """FX-prepare ``model``: insert observers (or fake quantization for ``qat``), fuse.

    Args:
        mapping: from :func:`make_qconfig_mapping`.
        example_inputs: a tuple of example positional inputs.
        leaf_names: modules not traced into (float islands or untraceable code).
        custom_modules: ``(float_cls, observed_cls, quantized_cls)`` user replacements.
    """
    with quiet():
        from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
        from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

        custom = PrepareCustomConfig().set_non_traceable_module_names(list(leaf_names))
        for float_cls, observed_cls, _ in custom_modules:
            custom.set_float_to_observed_mapping(float_cls, observed_cls)
        model.train(qat)
        fn = prepare_qat_fx if qat else prepare_fx
        return fn(
            model,
            mapping,
            example_inputs,
            prepare_custom_config=custom,
            backend_config=_backend_config(backend),
        )


def convert(
    model: nn.Module,
    *,
    backend: str,
    custom_modules: Iterable[tuple[type, type, type]] = (),
) -> nn.Module:
    """``convert_fx`` of a model :func:`prepare` returned (a GraphModule): observers become
    quantize/dequantize, modules quantized kernels."""
    with quiet():
        from torch.ao.quantization.fx.custom_config import ConvertCustomConfig
        from torch.ao.quantization.quantize_fx import convert_fx

        custom = ConvertCustomConfig()
        for _, observed_cls, quantized_cls in custom_modules:
            custom.set_observed_to_quantized_mapping(observed_cls, quantized_cls)
        model.eval()
        out = convert_fx(
            cast(torch.fx.GraphModule, model),  # prepared by prepare() above
            convert_custom_config=custom,
            backend_config=_backend_config(backend),
        )
    return out.eval()


def quantizable_types() -> tuple[type, ...]:
    """The ``torch.nn`` classes torch.ao's static and QAT module mappings replace (it
    matches exact types), plus the ReLU its fusion patterns name."""
    with quiet():
        from torch.ao.quantization import quantization_mappings as qm

        keys = set(qm.get_default_static_quant_module_mappings()) | set(
            qm.get_default_qat_module_mappings()
        )
    keys.add(nn.ReLU)
    return tuple(
        k for k in keys if isinstance(k, type) and k.__module__.startswith("torch.nn.modules")
    )


def is_quantized_module(module: nn.Module) -> bool:
    """True for modules of torch's quantized kernels (static or dynamic)."""
    return type(module).__module__.startswith(
        ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")
    )


def freeze_bn(model: nn.Module) -> None:
    """Stop updating BatchNorm statistics in fused QAT modules (and plain BatchNorms)."""
    with quiet():
        from torch.ao.nn.intrinsic import qat as nniqat

        model.apply(nniqat.freeze_bn_stats)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def freeze_observers(model: nn.Module) -> None:
    """Freeze activation ranges (weight ranges keep following the weights)."""
    for m in model.modules():
        if isinstance(m, CoreFakeQuantize) and m.fq.track == "running":
            m.disable_observer()
