"""DynamicConv2d: an ``nn.Conv2d`` with int8 weights whose input is quantized on the fly,
one scale and zero-point per call.

The math, for an input ``x`` and weight ``W`` ``(O, C/groups, kh, kw)``::

    W ~ ws[o] * Wq[o]              Wq int8 in [-127, 127], ws one scale per output channel
    x ~ s * (q - z)                q uint8 in [0, 255], s and z from this call's min / max
    y[o] = s * ws[o] * conv(q - z, Wq[o]) + b[o]

The weight is quantized once (:meth:`DynamicConv2d.from_float`); the activation range is
measured on every call, so no calibration data is needed. One scale for the whole input
(not per row as :class:`~quantlens.nn.dynamic_linear.DynamicLinear` does) because a
convolution mixes neighbouring positions: a per-position scale would not factor out of the
sum. The zero point is exact, so zero padding stays exactly zero.

Kernel paths (``layer.kernel = name`` forces one; ``"auto"`` takes the first that accepts):
oneDNN's uint8 x int8 convolution with a float32 output on CPU, else a float reference on the
same quantized values (:mod:`quantlens.nn.dynamic_conv_kernels`).

Graph exports (``torch.export``, TorchScript and ONNX tracing) record the reference path
with the scale and zero point as tensors computed in the graph, so ``ql.export`` writes a
model that quantizes each input as this layer does (in float ops: no int8 speed-up there).

The state dict holds plain tensors only (``weight`` int8, ``weight_scale``, ``bias``):
packed kernel weights are a cache rebuilt on first use and never saved.
"""

from __future__ import annotations

import math
import warnings
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from quantlens.errors import InputError, UnknownNameError
from quantlens.nn.dynamic_conv_kernels import (
    ConvKernel,
    conv_kernels,
    geometry,
    register_conv_kernel,
)
from quantlens.nn.kernel_cache import KernelCache
from quantlens.nn.registry import DynamicSpec, register_quantized

ACT_QMAX = 255  # uint8 activation codes
WEIGHT_QMAX = 127
_EPS = 1e-12


def quantize_conv_weight(
    weight: torch.Tensor, per_channel: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes of a convolution weight, one scale per output channel.

    Args:
        weight: ``(O, C/groups, kh, kw)`` float weight.
        per_channel: one scale per output channel (else one for the tensor, repeated).

    Returns:
        ``(Wq, ws)``: ``Wq`` int8 of ``weight``'s shape in [-127, 127]; ``ws`` float32 ``(O,)``.

    Example:
        >>> wq, ws = quantize_conv_weight(torch.randn(8, 3, 3, 3))
        >>> wq.dtype, ws.shape
        (torch.int8, torch.Size([8]))
    """
    w = weight.detach().float()
    amax = w.abs().flatten(1).amax(dim=1)  # (O,)
    if not per_channel:
        amax = amax.max().expand(w.shape[0])
    ws = (amax / WEIGHT_QMAX).clamp_min(_EPS)
    wq = torch.round(w / ws.reshape(-1, 1, 1, 1)).clamp_(-WEIGHT_QMAX, WEIGHT_QMAX)
    return wq.to(torch.int8), ws.contiguous()


def quantize_input(
    x: torch.Tensor, bounds: tuple[float, float] | None = None
) -> tuple[torch.Tensor, float, int]:
    """Asymmetric uint8 codes of ``x`` with one scale and zero-point from its min and max.

    Args:
        x: a float tensor.
        bounds: ``(min, max)`` of ``x`` when already known (else measured here).

    Returns:
        ``(q, s, z)``: ``q`` uint8 of ``x``'s shape (and memory format), ``x ~ s * (q - z)``;
        the range always holds 0, so ``z`` codes zero exactly.

    Example:
        >>> q, s, z = quantize_input(torch.tensor([[-1.0, 0.0, 3.0]]))
        >>> q.tolist(), z
        ([[0, 64, 255]], 64)
    """
    lo, hi = bounds if bounds is not None else (float(t) for t in torch.aminmax(x))
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = max((hi - lo) / ACT_QMAX, _EPS)
    z = int(min(max(round(-lo / s), 0), ACT_QMAX))
    q = torch.add(x, z * s).mul_(1.0 / s).round_().clamp_(0, ACT_QMAX)  # round(x / s) + z
    return q.to(torch.uint8), s, z


# --- the module ------------------------------------------------------------------------------


@register_quantized(nn.Conv2d, family="dynamic")
class DynamicConv2d(KernelCache):
    """``nn.Conv2d`` with int8 per-channel weights and input quantized per call (uint8).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
            padding_mode: as ``nn.Conv2d`` (``padding`` may be ``"same"`` or ``"valid"``).
        bias: whether there is a (float32) bias.
        per_channel: one weight scale per output channel (else one per tensor, stored
            repeated per channel).

    Buffers (zeros until :meth:`from_float` or ``load_state_dict`` fills them): ``weight``
    ``(O, C/groups, kh, kw)`` int8, ``weight_scale`` ``(O,)`` float32, ``bias`` ``(O,)``.

    The output has the input's memory format (a channels-last input gives a channels-last
    output, any other a contiguous one), so ``view`` after it works as after ``nn.Conv2d``.

    Example:
        >>> q = DynamicConv2d.from_float(nn.Conv2d(3, 16, 3, padding=1))
        >>> q(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 16, 32, 32])
    """

    weight: torch.Tensor
    weight_scale: torch.Tensor
    bias: torch.Tensor | None
    padding: str | tuple[int, int]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        per_channel: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise InputError(
                f"in_channels {in_channels} and out_channels {out_channels} must be divisible "
                f"by groups {groups}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = (
            _pair(kernel_size), _pair(stride), _pair(dilation)
        )  # fmt: skip
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.padding_mode, self.per_channel = padding_mode, bool(per_channel)
        self._pre_pad = self._explicit_padding()
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.register_buffer("weight", torch.zeros(shape, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_channels))
        self.register_buffer("bias", torch.zeros(out_channels) if bias else None)
        self._kernel = "auto"
        self._cache: dict[str, object] = {}

    def _explicit_padding(self) -> tuple[int, int, int, int] | None:
        """``F.pad`` amounts applied before the kernel (None: the kernel pads symmetrically,
        :attr:`conv_padding`): for ``"same"`` with an even total and other padding modes."""
        if self.padding == "valid":
            left = right = (0, 0)
        elif self.padding == "same":
            total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            left = tuple(t // 2 for t in total)
            right = tuple(t - t // 2 for t in total)
        else:  # a pair: the padding strings are "valid" and "same", as for nn.Conv2d
            left = right = cast(tuple[int, int], self.padding)
        if self.padding_mode == "zeros" and left == right:
            self.conv_padding = left
            return None
        self.conv_padding = (0, 0)
        return (left[1], right[1], left[0], right[0])  # F.pad order: W then H

    @classmethod
    def from_float(
        cls, conv: nn.Conv2d, spec: DynamicSpec | None = None, *, per_channel: bool = True
    ) -> DynamicConv2d:
        """A DynamicConv2d holding ``conv``'s weight quantized (``conv`` is left untouched);
        ``spec`` (the layer registry's), when given, replaces ``per_channel``."""
        layer = cls.empty(conv, spec, per_channel=per_channel)
        with torch.no_grad():
            wq, ws = quantize_conv_weight(conv.weight, per_channel)
            layer.weight.copy_(wq)
            layer.weight_scale.copy_(ws)
            if conv.bias is not None and layer.bias is not None:
                layer.bias.copy_(conv.bias.detach().float())
        return layer.to(conv.weight.device)

    @classmethod
    def empty(
        cls, conv: nn.Conv2d, spec: DynamicSpec | None = None, *, per_channel: bool = True
    ) -> DynamicConv2d:
        """The quantized structure of ``conv`` with placeholder weights."""
        if not isinstance(conv, nn.Conv2d):
            raise InputError(f"DynamicConv2d needs an nn.Conv2d, got {type(conv).__name__}")
        if spec is not None and spec.dtype != "int8":
            raise InputError(f"DynamicConv2d has int8 weights only, not {spec.dtype}")
        if spec is not None:
            per_channel = spec.per_channel
        return cls.from_config({**conv_config(conv), "per_channel": per_channel})

    @classmethod
    def from_config(cls, config: dict) -> DynamicConv2d:
        """An empty layer from :meth:`config` (for checkpoint loading)."""
        config = dict(config)
        return cls(config.pop("in_channels"), config.pop("out_channels"), **config)

    def config(self) -> dict:
        """What it takes to rebuild this layer empty: JSON-ready."""
        padding = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding,
            "dilation": list(self.dilation),
            "groups": self.groups,
            "bias": self.bias is not None,
            "padding_mode": self.padding_mode,
            "per_channel": self.per_channel,
        }

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the kernels compute with ``(O, C/groups, kh, kw)``."""
        return self.weight.float() * self.weight_scale.reshape(-1, 1, 1, 1)

    # kernel selection --------------------------------------------------------------------

    @property
    def kernel(self) -> str:
        """The forced kernel path name, or ``"auto"``."""
        return self._kernel

    @kernel.setter
    def kernel(self, name: str) -> None:
        if name != "auto" and name not in conv_kernels():
            raise UnknownNameError(
                f"unknown conv kernel path {name!r}; valid: auto, {', '.join(conv_kernels())}"
            )
        self._kernel = name

    def kernel_for(self, x: torch.Tensor) -> ConvKernel:
        """The path a forward on ``x`` takes."""
        if self._kernel != "auto":
            path = conv_kernels()[self._kernel]
            reason = path.accepts(x)
            if reason:
                raise InputError(
                    f"kernel path {path.name!r} cannot run this layer: {reason}; "
                    "set layer.kernel = 'auto'"
                )
            return path
        return next(p for p in conv_kernels().values() if p.accepts(x) is None)

    def _state_for(self, path: ConvKernel):
        if path.name not in self._cache:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                self._cache[path.name] = path.prepare(self)
        return self._cache[path.name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise InputError(
                f"expected input (N, {self.in_channels}, H, W) or ({self.in_channels}, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise InputError(f"DynamicConv2d takes floating-point input, got {x.dtype}")
        if x.dim() == 3:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        xf = x.float()
        if self._pre_pad is not None:
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            xf = F.pad(xf, self._pre_pad, mode=mode)
        if torch.jit.is_tracing() or torch.compiler.is_compiling():  # an export
            y = self._traced(xf)
            return y.contiguous(memory_format=fmt).to(x.dtype)
        bounds = (0.0, 0.0)
        if xf.numel():
            low, high = torch.aminmax(xf)
            bounds = (float(low), float(high))
        if xf.numel() == 0 or not all(map(math.isfinite, bounds)):  # NaN / Inf: as in float
            stride, padding, dilation = geometry(self)
            w = self.dequantized_weight()
            y = F.conv2d(xf, w, self.bias, stride, padding, dilation, self.groups)
        else:
            q, s, z = quantize_input(xf, bounds)
            path = self.kernel_for(q)
            y = path.run(self, self._state_for(path), q, s, z)
        return y.contiguous(memory_format=fmt).to(x.dtype)

    def _traced(self, xf: torch.Tensor) -> torch.Tensor:
        """The reference path with tensor-valued scale and zero point, for graph exports
        (``torch.export``, TorchScript / ONNX tracing), which cannot follow Python floats
        read off the input."""
        lo, hi = torch.aminmax(xf)
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
        s = ((hi - lo) / ACT_QMAX).clamp_min(_EPS)
        z = torch.round(-lo / s).clamp(0, ACT_QMAX)
        q = torch.round(xf / s + z).clamp(0, ACT_QMAX)
        stride, padding, dilation = geometry(self)
        w = self.dequantized_weight()
        return F.conv2d((q - z) * s, w, self.bias, stride, padding, dilation, self.groups)

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        weights = "per-channel" if self.per_channel else "per-tensor"
        return text + f", bias={self.bias is not None}, int8 {weights} weights, uint8 activations"


def conv_config(conv: nn.Conv2d) -> dict:
    """The constructor arguments of a layer shaped like ``conv`` (weights aside)."""
    return {
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "kernel_size": conv.kernel_size,
        "stride": conv.stride,
        "padding": conv.padding,
        "dilation": conv.dilation,
        "groups": conv.groups,
        "bias": conv.bias is not None,
        "padding_mode": conv.padding_mode,
    }


__all__ = [
    "ConvKernel",
    "DynamicConv2d",
    "conv_config",
    "conv_kernels",
    "quantize_conv_weight",
    "quantize_input",
    "register_conv_kernel",
]
