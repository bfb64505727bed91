"""Conv/Linear -> BatchNorm pairs found by running the model, for models torch.fx cannot trace.

:func:`quantlens.methods.fusion.find_pairs` reads the pairs off the torch.fx graph, or, when
the model does not trace, off adjacent ``nn.Sequential`` entries. A Hugging Face
``MobileNetV2ConvLayer`` is neither: its forward pads in Python (untraceable) and calls
``convolution``, ``normalization`` and ``activation`` as attributes. Its BatchNorms then stay
float after every int8 convolution, and a per-tensor int8 output of a convolution followed
by a BatchNorm that amplifies its low-variance channels loses them: the matrix's
mobilenet-v2-hf Static cell agreed with float at cosine 0.55.

:func:`runtime_pairs` runs the model once on an example batch with hooks: a BatchNorm whose
input *is* the output tensor of a Conv/Linear (the same object), each called once, is a
candidate. A hook cannot see whether that output also feeds something else (a residual), so
every candidate is verified: folded in a copy of the model, the output on the batch must stay
what it was (folding in eval mode is exact up to rounding). Candidates that fail are dropped.

Example:
    >>> runtime_pairs(hf_mobilenet, batch)[0]
    ('mobilenet_v2.conv_stem.first_conv.convolution',
     'mobilenet_v2.conv_stem.first_conv.normalization')
"""

from __future__ import annotations

import copy
import functools
from typing import cast

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from quantlens.core.data import Batch, first_tensor
from quantlens.methods.fusion import BATCHNORMS, FOLDABLE, fold_pair

_TOLERANCE = 1e-4  # relative output change a fold may cause (rounding only)


def _candidates(model: nn.Module, batch: Batch) -> list[tuple[str, str]]:
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> (layer, output)
    calls: dict[str, int] = {}
    fed: list[tuple[str, str]] = []

    def after_layer(module, args, output, name):
        calls[name] = calls.get(name, 0) + 1
        if isinstance(output, torch.Tensor):
            produced[id(output)] = (name, output)

    def before_bn(module, args, name):
        calls[name] = calls.get(name, 0) + 1
        found = produced.get(id(args[0])) if args else None
        if found is not None and found[1] is args[0]:
            fed.append((found[0], name))

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, FOLDABLE) and not getattr(module, "transposed", False):
            hook = lambda m, a, o, n=name: after_layer(m, a, o, n)
            handles.append(module.register_forward_hook(hook))
        elif isinstance(module, BATCHNORMS):
            handles.append(
                module.register_forward_pre_hook(functools.partial(before_bn, name=name))
            )
    try:
        with torch.no_grad():
            batch.run(model)
    except Exception:  # noqa: BLE001 - a model that does not run has no pairs to find here
        return []
    finally:
        for h in handles:
            h.remove()
    return [(layer, bn) for layer, bn in fed if calls[layer] == 1 and calls[bn] == 1]


def _output(model: nn.Module, batch: Batch) -> torch.Tensor | None:
    with torch.no_grad():
        out = first_tensor(batch.run(model))
    return None if out is None else out.detach().float()


def _folds_exactly(model: nn.Module, pairs, batch: Batch, reference: torch.Tensor) -> bool:
    trial = copy.deepcopy(model)
    for layer, bn in pairs:
        fold_pair(trial.get_submodule(layer), cast(_BatchNorm, trial.get_submodule(bn)))
        parent, _, attr = bn.rpartition(".")
        setattr(trial.get_submodule(parent) if parent else trial, attr, nn.Identity())
    out = _output(trial, batch)
    if out is None or out.shape != reference.shape:
        return False
    return bool((out - reference).norm() <= _TOLERANCE * reference.norm().clamp_min(1e-12))


def runtime_pairs(model: nn.Module, batch: Batch) -> list[tuple[str, str]]:
    """``(layer, batchnorm)`` name pairs where the BatchNorm reads that layer's output, found
    by running ``model`` (eval mode) on ``batch`` and verified by folding them in a copy.

    Args:
        model: a float model in eval mode (not changed).
        batch: an example batch it runs on.

    Returns:
        The pairs that fold without changing the output on ``batch``.
    """
    if not any(isinstance(m, BATCHNORMS) for m in model.modules()):
        return []  # (no forward, no activations held)
    found = _candidates(model, batch)
    if not found:
        return []
    reference = _output(model, batch)
    if reference is None or not torch.isfinite(reference).all():
        return []
    if _folds_exactly(model, found, batch, reference):
        return found
    return [pair for pair in found if _folds_exactly(model, [pair], batch, reference)]
