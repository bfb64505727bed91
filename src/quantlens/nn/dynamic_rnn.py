"""DynamicRNN: a dynamically quantized LSTM / GRU whose state dict is plain tensors.

The kernels are PyTorch's (torch.ao's ``DynamicQuantizedLSTM`` / ``GRU``: int8 weights per
output channel, or fp16 weights; activations quantized per step). Their packed weights are
TorchScript objects that a pickle-free checkpoint cannot hold, so this wrapper keeps the
torch.ao module out of the module tree and saves / loads its weights as tensors
(``weight_ih_l0`` int8 codes + ``weight_ih_l0_scale`` + ``weight_ih_l0_zero_point``, float
biases).

The upstream calls live with the other torch.ao calls in
:mod:`quantlens.methods.backends.torch_ao`, which registers them here as the
:class:`RNNKernels` this layer runs on (:func:`register_rnn_kernels`); this module only
holds the layer and its tensor-only state dict.
"""

from __future__ import annotations

from typing import Literal, Protocol, cast

import torch
from torch import nn

from quantlens.errors import BackendError
from quantlens.nn.registry import DynamicSpec, register_quantized

RNN_TYPES = (nn.LSTM, nn.GRU)

RNNDtype = Literal["int8", "float16"]
RNNKind = Literal["lstm", "gru"]


class RNNKernels(Protocol):
    """The upstream that builds and runs a dynamic LSTM / GRU (weights as plain tensors in
    and out). Implemented by :mod:`quantlens.methods.backends.torch_ao.dynamic_rnn`."""

    def from_float(self, module: nn.Module, *, dtype: str, per_channel: bool) -> nn.Module:
        """The upstream dynamic RNN holding ``module``'s weights."""
        ...

    def empty(self, module: nn.Module, *, dtype: str) -> nn.Module:
        """An upstream dynamic RNN with ``module``'s shape and placeholder weights."""
        ...

    def weights(self, qrnn: nn.Module) -> dict[str, torch.Tensor]:
        """The weights and biases of ``qrnn`` as plain tensors."""
        ...

    def set_weights(self, qrnn: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        """Load :meth:`weights` output back into ``qrnn``."""
        ...


_KERNELS: list[RNNKernels] = []


def register_rnn_kernels(kernels: RNNKernels) -> RNNKernels:
    """Make ``kernels`` the upstream that :class:`DynamicRNN` runs on (the last one wins).

    Args:
        kernels: an :class:`RNNKernels` implementation.

    Returns:
        ``kernels``.

    Example:
        >>> register_rnn_kernels(TorchAORNNKernels())  # done by the torch.ao backend
    """
    _KERNELS.append(kernels)
    return kernels


def rnn_kernels() -> RNNKernels:
    """The registered :class:`RNNKernels` (raises :class:`BackendError` when none is)."""
    if not _KERNELS:
        raise BackendError(
            "no dynamic RNN kernels are registered; import quantlens (not only quantlens.nn)"
        )
    return _KERNELS[-1]


@register_quantized(nn.GRU, family="dynamic")
@register_quantized(nn.LSTM, family="dynamic")
class DynamicRNN(nn.Module):
    """An ``nn.LSTM`` / ``nn.GRU`` with int8 (or fp16) weights; same call signature and outputs.

    Build it with :meth:`from_float` (quantize a trained layer) or :meth:`empty` (the
    structure only, for ``load_state_dict``).

    Example:
        >>> q = DynamicRNN.from_float(nn.LSTM(8, 64, batch_first=True))
        >>> out, (h, c) = q(torch.rand(2, 8, 8))
    """

    _qrnn: nn.Module  # (set with object.__setattr__: not a child module)
    _kernels: RNNKernels

    def __init__(
        self,
        qrnn: nn.Module,
        kind: RNNKind,
        dtype: RNNDtype,
        kernels: RNNKernels | None = None,
    ) -> None:
        super().__init__()
        object.__setattr__(self, "_kernels", kernels or rnn_kernels())
        object.__setattr__(self, "_qrnn", qrnn)  # not a child: its state dict holds ScriptObjects
        self.kind, self.dtype = kind, dtype
        self.input_size, self.hidden_size = qrnn.input_size, qrnn.hidden_size
        self.num_layers, self.bidirectional, self.batch_first = (
            qrnn.num_layers,
            qrnn.bidirectional,
            qrnn.batch_first,
        )

    @classmethod
    def from_float(
        cls,
        module: nn.Module,
        spec: DynamicSpec | None = None,
        *,
        dtype: RNNDtype = "int8",
        per_channel: bool = True,
    ) -> DynamicRNN:
        """Quantize a float ``nn.LSTM`` / ``nn.GRU`` (left untouched); ``spec``, when given,
        replaces the keyword arguments."""
        if spec is not None:
            dtype, per_channel = spec.dtype, spec.per_channel
        kernels = rnn_kernels()
        qrnn = kernels.from_float(module, dtype=dtype, per_channel=per_channel)
        return cls(qrnn, _kind(module), dtype, kernels)

    @classmethod
    def empty(
        cls, module: nn.Module, spec: DynamicSpec | None = None, *, dtype: RNNDtype = "int8"
    ) -> DynamicRNN:
        """The quantized structure of ``module`` with placeholder weights (``spec``, when
        given, replaces ``dtype``)."""
        if spec is not None:
            dtype = spec.dtype
        kernels = rnn_kernels()
        qrnn = kernels.empty(module, dtype=dtype)
        return cls(qrnn, _kind(module), dtype, kernels)

    def forward(self, x, hx=None):
        return self._qrnn(x, hx)

    def torchscript_module(self) -> nn.Module:
        """The module TorchScript captures in this layer's place (see
        :mod:`quantlens.methods.backends.torchscript`): the torch.ao dynamic LSTM / GRU that
        runs the forward. It is kept out of the module tree (its state dict holds packed
        ScriptObjects), so the tracer would not find its packed weights; in an exported copy
        it takes the wrapper's place and computes exactly the same outputs."""
        return self._qrnn

    def weights(self) -> dict[str, torch.Tensor]:
        """The layer's weights and biases as plain tensors (what the state dict holds)."""
        return self._kernels.weights(self._qrnn)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name, tensor in self.weights().items():
            destination[prefix + name] = tensor

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        expected = self.weights()
        found = {
            name: state_dict[prefix + name] for name in expected if prefix + name in state_dict
        }
        missing_keys.extend(prefix + name for name in expected if name not in found)
        if len(found) == len(expected):
            codes = [
                n for n in found if not n.endswith(("_scale", "_zero_point"))
            ]  # (qparams may differ)
            bad = [
                n
                for n in codes
                if found[n].shape != expected[n].shape or found[n].dtype != expected[n].dtype
            ]
            if bad:
                error_msgs.append(
                    f"{prefix}: tensors {', '.join(bad)} differ in shape or dtype from the model's"
                )
            else:
                self._kernels.set_weights(self._qrnn, found)
        if strict:
            own = {prefix + name for name in expected}
            unexpected_keys.extend(
                k
                for k in state_dict
                if k.startswith(prefix) and k not in own and "." not in k[len(prefix) :]
            )

    def __deepcopy__(self, memo):
        clone = DynamicRNN.empty(_float_twin(self), dtype=self.dtype)
        clone._kernels.set_weights(clone._qrnn, self.weights())
        clone.train(self.training)
        return clone

    def extra_repr(self) -> str:
        weights = "int8 per-channel" if self.dtype == "int8" else "float16"
        return (
            f"{self.kind.upper()}({self.input_size}, {self.hidden_size}, "
            f"num_layers={self.num_layers}, bidirectional={self.bidirectional}, "
            f"batch_first={self.batch_first}), {weights} weights"
        )


def _kind(module: nn.Module) -> RNNKind:
    """``"lstm"`` or ``"gru"``: the standard class ``module`` is (a subclass included)."""
    return "lstm" if isinstance(module, nn.LSTM) else "gru"


def _float_twin(layer: DynamicRNN) -> nn.Module:
    q = layer._qrnn
    cls = nn.LSTM if layer.kind == "lstm" else nn.GRU
    return cls(
        q.input_size,
        q.hidden_size,
        q.num_layers,
        bias=q.bias,
        batch_first=q.batch_first,
        dropout=float(cast(float, q.dropout)),  # torch.ao's RNN keeps the float it was given
        bidirectional=q.bidirectional,
    )
