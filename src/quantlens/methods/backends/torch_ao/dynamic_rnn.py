"""Dynamic LSTM / GRU: torch.ao's ``DynamicQuantizedLSTM`` / ``GRU``.

int8 (per channel or per tensor) or fp16 weights packed for fbgemm/qnnpack, activations
quantized per step. Their packed weights are ScriptObjects; :func:`dynamic_rnn_weights` /
:func:`dynamic_rnn_set_weights` move them to and from plain tensors so checkpoints stay
pickle-free. Used by :mod:`quantlens.nn.dynamic_rnn`. Tested on torch 2.13.0.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from quantlens.errors import InputError
from quantlens.methods.backends.torch_ao._upstream import quiet, tq
from quantlens.nn.dynamic_rnn import register_rnn_kernels
from quantlens.nn.registry import standard_class


def _dynamic_rnn_classes() -> dict[type, Any]:
    with quiet():
        import torch.ao.nn.quantized.dynamic as nnqd
    return {nn.LSTM: nnqd.LSTM, nn.GRU: nnqd.GRU}


def _rnn_class(module: nn.Module, classes: dict[type, Any]) -> type[nn.Module]:
    """The LSTM/GRU class ``module`` runs as (itself or the standard class it subclasses)."""
    base = standard_class(module, classes)
    if base is None:
        raise InputError(f"{type(module).__name__} is not an nn.LSTM or nn.GRU")
    return base


def dynamic_rnn_from_float(module: nn.Module, *, dtype: str, per_channel: bool) -> nn.Module:
    """torch.ao's dynamic LSTM/GRU holding ``module``'s weights (``dtype`` "int8" | "float16")."""
    ao = tq()
    if dtype == "float16":
        qconfig = ao.float16_dynamic_qconfig
    else:
        qconfig = ao.per_channel_dynamic_qconfig if per_channel else ao.default_dynamic_qconfig
    classes = _dynamic_rnn_classes()
    base = _rnn_class(module, classes)  # a subclass keeping the base's forward runs as the base
    own = type(module)
    module.qconfig = qconfig
    module.__class__ = base  # torch.ao checks the exact type
    try:
        with quiet():
            return classes[base].from_float(module)
    finally:
        module.__class__ = own
        del module.qconfig


def dynamic_rnn_empty(module: nn.Module, *, dtype: str) -> nn.Module:
    """An untrained torch.ao dynamic LSTM/GRU with ``module``'s shape, for loading weights into."""
    classes = _dynamic_rnn_classes()
    cls = classes[_rnn_class(module, classes)]
    rnn = cast(nn.RNNBase, module)
    with quiet():
        return cls(
            rnn.input_size,
            rnn.hidden_size,
            rnn.num_layers,
            rnn.bias,
            rnn.batch_first,
            float(rnn.dropout),
            rnn.bidirectional,
            dtype=torch.qint8 if dtype == "int8" else torch.float16,
        )


def dynamic_rnn_weights(qrnn: nn.Module) -> dict[str, torch.Tensor]:
    """The weights and biases of a torch.ao dynamic RNN as plain tensors.

    int8 weights ``weight_ih_l0`` become ``weight_ih_l0`` (int8 codes), ``..._scale``
    (float64, per channel) and ``..._zero_point`` (int64); fp16 weights stay fp16.
    """
    out: dict[str, torch.Tensor] = {}
    with quiet():
        wb = cast(Any, qrnn)._weight_bias()  # torch.ao's packed-weight accessors
        for name, w in wb["weight"].items():
            if not w.is_quantized:
                out[name] = w.to(torch.float16)
                continue
            out[name] = w.int_repr()
            if w.qscheme() == torch.per_channel_affine:
                out[name + "_scale"], out[name + "_zero_point"] = (
                    w.q_per_channel_scales(),
                    w.q_per_channel_zero_points(),
                )
            else:
                out[name + "_scale"] = torch.tensor([w.q_scale()], dtype=torch.float64)
                out[name + "_zero_point"] = torch.tensor([w.q_zero_point()], dtype=torch.int64)
    out.update({name: b for name, b in wb["bias"].items() if b is not None})
    return out


def dynamic_rnn_set_weights(qrnn: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load :func:`dynamic_rnn_weights` output back into ``qrnn`` (repacks its weights)."""
    weights, biases = {}, {}
    with quiet():
        for name, t in tensors.items():
            if name.startswith("bias_"):
                biases[name] = t
            elif name.startswith("weight_") and not name.endswith(("_scale", "_zero_point")):
                if t.dtype == torch.int8:
                    scale, zp = tensors[name + "_scale"], tensors[name + "_zero_point"]
                    if scale.numel() == 1:
                        t = torch._make_per_tensor_quantized_tensor(t, scale.item(), int(zp.item()))
                    else:
                        t = torch._make_per_channel_quantized_tensor(t, scale, zp, 0)
                else:
                    t = t.float()
                weights[name] = t
        cast(Any, qrnn).set_weight_bias(
            {
                **weights,
                **{
                    w.replace("weight_", "bias_", 1): biases.get(w.replace("weight_", "bias_", 1))
                    for w in weights
                },
            }
        )


class TorchAORNNKernels:
    """torch.ao's dynamic LSTM / GRU as the :class:`~quantlens.nn.dynamic_rnn.RNNKernels` of
    :class:`~quantlens.nn.dynamic_rnn.DynamicRNN`.

    Example:
        >>> qrnn = TorchAORNNKernels().from_float(nn.LSTM(8, 16), dtype="int8", per_channel=True)
    """

    def from_float(self, module: nn.Module, *, dtype: str, per_channel: bool) -> nn.Module:
        """See :func:`dynamic_rnn_from_float`."""
        return dynamic_rnn_from_float(module, dtype=dtype, per_channel=per_channel)

    def empty(self, module: nn.Module, *, dtype: str) -> nn.Module:
        """See :func:`dynamic_rnn_empty`."""
        return dynamic_rnn_empty(module, dtype=dtype)

    def weights(self, qrnn: nn.Module) -> dict[str, torch.Tensor]:
        """See :func:`dynamic_rnn_weights`."""
        return dynamic_rnn_weights(qrnn)

    def set_weights(self, qrnn: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        """See :func:`dynamic_rnn_set_weights`."""
        dynamic_rnn_set_weights(qrnn, tensors)


register_rnn_kernels(TorchAORNNKernels())
