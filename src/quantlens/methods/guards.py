"""What ``ql.quantize`` / ``ql.convert`` check and keep around a method: a model that is
already quantized or prepared is refused (:func:`refuse_quantized`), and the result gets
the train/eval mode of the model given (:func:`train_modes`, :func:`restore_modes`)."""

from __future__ import annotations

from torch import nn

from quantlens.errors import InputError

# Packages whose modules are quantized layers, observers or fake quantization (quantlens's
# own and PyTorch's), and the float helpers among them that a float model may hold.
_QUANTIZED_PACKAGES = (
    "quantlens.nn.",
    "torch.ao.nn.quantized",
    "torch.ao.nn.qat",
    "torch.ao.nn.intrinsic.quantized",
    "torch.ao.nn.intrinsic.qat",
    "torch.ao.quantization.",
    "torch.nn.quantized",
    "torch.nn.qat",
    "torch.nn.intrinsic.quantized",
    "torch.nn.intrinsic.qat",
)
_FLOAT_HELPERS = ("QuantStub", "DeQuantStub", "QuantWrapper", "FloatFunctional")


def quantized_modules(model: nn.Module) -> list[str]:
    """Names of the modules of ``model`` that are already quantized: quantlens's quantized
    and fake-quant layers, PyTorch's quantized / QAT modules, observers (QuantStub,
    DeQuantStub and FloatFunctional, which float models hold, are not counted).

    Example:
        >>> quantized_modules(ql.quantize(nn.Sequential(nn.Linear(16, 16)), ql.WeightOnly(bits=8)))
        ['0']
    """
    out = []
    for name, module in model.named_modules():
        cls = type(module)
        if cls.__module__.startswith(_QUANTIZED_PACKAGES) and cls.__name__ not in _FLOAT_HELPERS:
            out.append(name or "(root)")
    return out


def refuse_quantized(model: nn.Module) -> None:
    """Raise InputError if ``model`` is prepared or already quantized: quantizing it again
    would find nothing new and report the old layers as newly quantized, or stack errors.

    Raises:
        InputError: one line naming the method (or the quantized modules) and what to do.
    """
    if getattr(model, "quantlens_prepared", None) is not None:
        raise InputError(
            "this model is prepared (ql.prepare / ql.prepare_qat): finish it with "
            "ql.convert(model) instead of quantizing it again"
        )
    config = getattr(model, "quantlens_config", None)
    found = quantized_modules(model)
    if config is None and not found:
        return
    what = (
        f"by {type(config).__name__}"
        if config is not None
        else f"{len(found)} quantized module(s): "
        f"{', '.join(found[:3])}{', ...' if len(found) > 3 else ''}"
    )
    raise InputError(
        f"this model is already quantized ({what}); quantize the float model instead (one config "
        "mixes methods with overrides=...), or turn a weight-only model back with ql.dequantize "
        "first"
    )


def train_modes(model: nn.Module) -> dict[str, bool]:
    """``{module name: module.training}`` for every module of ``model`` (the root is "")."""
    return {name: m.training for name, m in model.named_modules()}


def restore_modes(model: nn.Module, modes: dict[str, bool]) -> None:
    """Give every module of ``model`` the train/eval mode the module of the same name had in
    the model the caller gave (new modules inside a replaced one: the root's mode).

    Example:
        >>> modes = train_modes(model); qm = transform(model); restore_modes(qm, modes)
    """
    model.train(modes[""])
    for name, module in model.named_modules():
        if name in modes:
            module.training = modes[name]
