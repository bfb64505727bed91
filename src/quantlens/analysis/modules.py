"""What the analysis tools need to know about modules: which modules are layers, the float
weight a (quantized, fake-quantized or float) layer computes with, the order a forward pass
calls them in, which float modules a graph-mode quantizer fused into a layer, and how to run
a model without changing it.

Example:
    >>> order = execution_order(model, first_batch(data))
    >>> w = dequantized_weight(qm.get_submodule("fc"))        # the weight the kernel uses
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from quantlens.core.data import first_tensor
from quantlens.methods import linear_like
from quantlens.methods.fusion import BATCHNORMS, bn_scale, fold_bn_params
from quantlens.nn.input_scale import input_scale_of

__all__ = [
    "BATCHNORMS",
    "as_float",
    "dequantized_weight",
    "execution_order",
    "first_tensor",
    "float_weight",
    "fused_followers",
    "is_layer",
    "match_float_name",
    "unchanged",
]

ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Hardswish,
    nn.SiLU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
)
WRAPPER_SUFFIXES = (".module", "._orig_mod")


# --- weights --------------------------------------------------------------------------------


def dequantized_weight(module: nn.Module) -> torch.Tensor | None:
    """The float weight a (quantized or float) layer computes with, or None if it has none.

    Handles quantlens' packed layers (``dequantized_weight()``), PyTorch's quantized modules
    (``weight()`` returning a quantized tensor), fake-quant (QAT) modules
    (``weight_fake_quant(weight)``; a fused QAT ``ConvBn*`` fake-quantizes its weight with
    the BatchNorm folded in, so that is what is returned) and plain float layers. The
    module is not changed: a fake-quant module runs on a copy.
    """
    with torch.no_grad():
        if callable(getattr(module, "dequantized_weight", None)):
            scale = input_scale_of(module)  # y = W' (x / s): the float layer's weight is W' / s
            w = module.dequantized_weight().float()
            return w if scale is None else w / scale
        weight = getattr(module, "weight", None)
        if callable(weight) and not isinstance(weight, torch.Tensor):
            try:
                weight = weight()
            except (RuntimeError, TypeError):
                return None
        if not isinstance(weight, torch.Tensor):
            return None
        weight = linear_like.linear_weight(module, weight)  # (out, in), as the quantized Linear's
        if weight.is_quantized:
            return weight.dequantize().float()
        fake = getattr(module, "weight_fake_quant", None)
        if isinstance(fake, nn.Module):
            bn = getattr(module, "bn", None)
            if (
                isinstance(bn, BATCHNORMS) and bn.running_var is not None
            ):  # fused QAT ConvBn*: fold, then quantize
                weight = weight * bn_scale(bn).reshape(-1, *([1] * (weight.ndim - 1)))
            weight = copy.deepcopy(fake)(weight)  # a copy: its observer must not move
        return weight.detach().float()


def is_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a layer with a weight (float, quantized or fake-quantized)."""
    return (
        callable(getattr(module, "dequantized_weight", None))
        or getattr(module, "weight", None) is not None
    )


def float_weight(
    name: str, absorbed: list[str], float_modules: dict[str, nn.Module]
) -> torch.Tensor | None:
    """The float weight of ``name`` with the first BatchNorm in ``absorbed`` folded in (what a
    fused quantized layer's weight approximates)."""
    module = float_modules[name]
    weight = dequantized_weight(module)
    bns = [float_modules[n] for n in absorbed if isinstance(float_modules[n], BATCHNORMS)]
    if weight is not None and bns:
        weight, _ = fold_bn_params(weight, getattr(module, "bias", None), bns[0])
    return weight


# --- tensors ----------------------------------------------------------------------------------


def as_float(t: torch.Tensor | None) -> torch.Tensor | None:
    """A detached float copy of ``t`` (quantized tensors dequantized), None if not floating."""
    if t is None:
        return None
    t = t.dequantize() if t.is_quantized else t
    return t.detach().float().clone() if t.is_floating_point() else None


# --- structure ----------------------------------------------------------------------------------


def execution_order(model: nn.Module, batch) -> list[str]:
    """Names of the leaf modules of ``model`` in the order one forward on ``batch`` calls them."""
    order: list[str] = []
    with torch.no_grad(), unchanged(model) as run:
        handles = [
            m.register_forward_hook(lambda mod, a, o, n=name: order.append(n))
            for name, m in run.named_modules()
            if name and not list(m.children())
        ]
        try:
            batch.run(run)
        finally:
            for h in handles:
                h.remove()
    seen: set[str] = set()
    return [n for n in order if not (n in seen or seen.add(n))]


def fused_followers(
    name: str, order: list[str], modules: dict[str, nn.Module], stop, *, activations: bool = True
) -> list[str]:
    """The BatchNorms (and activations) that run right after ``name`` in ``order`` (leaf
    modules in execution order), up to the first name in ``stop``: what a graph-mode
    quantizer fuses into the layer ``name``."""
    if name not in order:
        return []
    out = []
    for nxt in order[order.index(name) + 1 :]:
        mod = modules[nxt]
        if nxt in stop:
            break
        if isinstance(mod, BATCHNORMS) or (activations and isinstance(mod, ACTIVATIONS)):
            out.append(nxt)
            continue
        break
    return out


def match_float_name(qname: str, float_modules: dict[str, nn.Module]) -> str | None:
    """The float module a quantized module named ``qname`` stands for (wrapper suffixes such
    as ``.module`` dropped), or None."""
    if qname in float_modules:
        return qname
    for suffix in WRAPPER_SUFFIXES:
        if qname.endswith(suffix) and qname[: -len(suffix)] in float_modules:
            return qname[: -len(suffix)]
    return None


# --- running without side effects ----------------------------------------------------------------


def _observes(module: nn.Module) -> bool:
    """A fake-quant module whose forward may move its range (torch.ao or quantlens)."""
    return callable(getattr(module, "enable_observer", None)) and (
        hasattr(module, "observer_enabled") or hasattr(module, "observe_enabled")
    )


@contextlib.contextmanager
def unchanged(model: nn.Module) -> Iterator[nn.Module]:
    """The model to run for a measurement that must leave ``model`` as it was.

    Yields ``model`` itself in eval mode (every module's own training flag restored on
    exit) or, when it holds fake-quant modules (a prepared QAT model, whose observers and
    BatchNorm statistics a forward would move), an eval-mode copy with the activation
    observers frozen at their current ranges (weight fake-quants keep following the
    weights, as converting would), so nothing of ``model`` changes.
    """
    if any(_observes(m) for m in model.modules()):
        work = copy.deepcopy(model).eval()
        for name, m in work.named_modules():
            if _observes(m) and "weight_fake_quant" not in name:
                m.enable_observer(False)
        yield work
        return
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
