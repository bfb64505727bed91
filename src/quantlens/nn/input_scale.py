"""An explicit per-input-channel scale carried by a quantized Linear: ``y = W' (x / s)``.

AWQ and SmoothQuant rewrite ``y = W x`` as ``y = (W diag(s)) (x / s)``. Where the op that
produces ``x`` can absorb ``1 / s`` (a norm, the previous Linear) the scale is folded there
and nothing runs at inference time (:mod:`quantlens.methods.scale_fold`). Where it cannot
(Llama's ``o_proj`` under grouped-query attention, ``down_proj`` after a non-linear
activation), the layer keeps ``s`` as an ``input_scale`` buffer of shape ``(K,)`` and divides
its input by it before anything else (one element-wise op; in :class:`DynamicLinear` before
the activations are quantized, which is what SmoothQuant needs).

The buffer is ``None`` (absent from the state dict) unless set, so checkpoints written
before it existed load unchanged; a layer that has one records ``"input_scale": true`` in
its ``config()``, which is how loading knows to make room for it.

Example:
    >>> q = QLinear.from_float(lin, qweight)
    >>> set_input_scale(q, torch.full((lin.in_features,), 2.0))
    >>> q.config()["input_scale"]
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from quantlens.errors import InputError

BUFFER = "input_scale"
"""The buffer's name (also the ``config()`` key saying the layer has one)."""


def _width(module: nn.Module) -> int:
    """The layer's input features (``in_features``)."""
    return int(cast(Any, module).in_features)


def input_scale_of(module: nn.Module) -> torch.Tensor | None:
    """The ``(K,)`` input scale ``module`` divides its input by, or None.

    Example:
        >>> input_scale_of(nn.Linear(4, 2)) is None
        True
    """
    scale = module._buffers.get(BUFFER)  # (not getattr: no nn.Module.__getattr__ per call)
    return scale if isinstance(scale, torch.Tensor) else None


def set_input_scale(module: nn.Module, scale: torch.Tensor | None) -> None:
    """Give ``module`` (a layer with ``in_features``) the input scale ``scale`` (``(K,)``,
    positive), or remove it with None; the buffer lives on the module's device, float32.

    Raises:
        InputError: ``scale`` does not have one positive entry per input feature.

    Example:
        >>> set_input_scale(layer, torch.ones(layer.in_features))
    """
    if scale is None:
        module.register_buffer(BUFFER, None)
        return
    width = _width(module)
    if scale.shape != (width,) or not bool((scale > 0).all()):
        raise InputError(
            f"an input scale needs {width} positive entries (one per input feature), got "
            f"shape {tuple(scale.shape)}; pass the per-channel scales the weight was multiplied by"
        )
    device = next((t.device for t in (*module.buffers(), *module.parameters())), scale.device)
    module.register_buffer(BUFFER, scale.detach().float().to(device).clone())


def scale_input(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x / input_scale`` when ``module`` has one, else ``x`` itself (no copy)."""
    scale = input_scale_of(module)
    return x if scale is None else x / scale.to(x.dtype)


def has_input_scale(config: Mapping[str, Any]) -> bool:
    """Whether a layer ``config()`` (as saved in ``quantlens.json``) records an input scale."""
    return bool(config.get(BUFFER, False))


def restore_input_scales(model: nn.Module, layers: Mapping[str, Mapping[str, Any]]) -> None:
    """Give every layer that ``layers`` (name -> saved ``config()``) records with an input
    scale a placeholder one (ones), so the checkpoint's state dict loads into it.

    Example:
        >>> restore_input_scales(skeleton, meta["layers"])
    """
    for name, config in layers.items():
        if isinstance(config, Mapping) and has_input_scale(config):
            module = model.get_submodule(name)
            set_input_scale(module, torch.ones(_width(module)))
