"""The eager-mode fallback: each Conv/Linear becomes its own int8 island.

For models whose own ``forward`` torch.fx cannot trace: the named layers are wrapped in
``QuantStub -> layer -> DeQuantStub`` (torch.ao ``QuantWrapper``), observed and swapped for
quantized modules with torch.ao's eager ``prepare`` / ``convert``. Tested on torch 2.13.0.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from quantlens.methods.backends.torch_ao._upstream import quiet, tq

EAGER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _contiguous_output(module: nn.Module, args: tuple, output):
    """Forward hook of an eager island: its float output made contiguous. An int8
    convolution returns channels-last tensors, and the float code after the island
    (``x.view(x.size(0), -1)``) expects the layout the float layer gave."""
    return output.contiguous() if isinstance(output, torch.Tensor) else output


def _island(module: nn.Module) -> nn.Module:
    wrapper = tq().QuantWrapper(module)
    wrapper.register_forward_hook(_contiguous_output)
    return wrapper


def eager_wrap(model: nn.Module, names: Iterable[str]) -> list[str]:
    """Wrap the named Conv/Linear modules in ``QuantStub -> layer -> DeQuantStub``
    (torch.ao ``QuantWrapper``, output made contiguous): each becomes an int8 island
    with float in between."""
    wrapped = []
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, _island(getattr(parent, attr)))
        wrapped.append(name)
    return wrapped


def eager_prepare(model: nn.Module, qconfig, names: Iterable[str]) -> nn.Module:
    """Give the wrapped modules ``qconfig`` and insert observers (in place)."""
    ao = tq()
    with quiet():
        for name in names:
            model.get_submodule(name).qconfig = qconfig
        model.eval()
        return ao.prepare(model, inplace=True)


def eager_convert(model: nn.Module) -> nn.Module:
    """Swap observed modules for quantized ones (in place)."""
    with quiet():
        return tq().convert(model.eval(), inplace=True)
