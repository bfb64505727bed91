"""QConv2d: a weight-only quantized ``nn.Conv2d`` (dequantize once, then ``F.conv2d``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from quantlens.core.qtensor import QTensor
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError
from quantlens.nn import kernels
from quantlens.nn.kernels.registry import KernelKey
from quantlens.nn.packed import PackedWeight
from quantlens.nn.registry import register_quantized


@register_quantized(nn.Conv2d)
class QConv2d(PackedWeight):
    """A 2-D convolution whose weight ``(out, in / groups, kh, kw)`` is stored packed.

    ``forward`` dequantizes the weight once into a float32 cache (dropped on
    ``load_state_dict`` / ``.to()``; never in the state dict) and runs ``F.conv2d`` in
    float32, so it matches the dequantize-then-convolve reference exactly; the saving is
    on disk and in the state dict, not at run time. Set ``layer.kernel = "reference"`` to
    dequantize on every call instead (no cache); both are paths of the ``"conv"`` family in
    :mod:`quantlens.nn.kernels`.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias:
            as ``nn.Conv2d`` (``padding_mode="zeros"`` only).
        scheme: per-channel (axis 0, one scale per output channel), per-group along an
            axis, or per-tensor; uniform or codebook.

    Example:
        >>> conv = nn.Conv2d(16, 32, 3, padding=1)
        >>> scheme = ql.QScheme(bits=4, granularity="per_channel")
        >>> q = QConv2d.from_float(conv, ql.quantize_tensor(conv.weight.detach(), scheme))
        >>> q(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 32, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        *,
        scheme: QScheme,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        device=None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        pair = nn.modules.utils._pair
        self.in_channels, self.out_channels, self.groups = (
            int(in_channels),
            int(out_channels),
            int(groups),
        )
        self.kernel_size, self.stride, self.dilation = (
            pair(kernel_size),
            pair(stride),
            pair(dilation),
        )
        self.padding = padding if isinstance(padding, str) else pair(padding)
        self._init_weight(
            (self.out_channels, self.in_channels // self.groups, *self.kernel_size), scheme, device
        )
        if bias:
            self.bias = nn.Parameter(
                torch.zeros(self.out_channels, device=device, dtype=dtype), requires_grad=False
            )
        else:
            self.register_parameter("bias", None)
        self._kernel = "auto"

    @classmethod
    def empty(cls, conv: nn.Conv2d, scheme: QScheme) -> QConv2d:
        """The structure :meth:`from_float` builds for ``conv`` and ``scheme``, with zero
        buffers (what a checkpoint's state dict loads into).

        Example:
            >>> QConv2d.empty(nn.Conv2d(8, 16, 3), ql.QScheme(bits=8)).weight_shape
            (16, 8, 3, 3)
        """
        return cls.from_config({**_conv_config(conv), "scheme": scheme.to_dict()})

    @classmethod
    def from_float(cls, conv: nn.Conv2d, qweight: QTensor) -> QConv2d:
        """A QConv2d holding ``qweight`` (``conv.weight`` quantized) and ``conv``'s bias."""
        if not isinstance(conv, nn.Conv2d):
            raise InputError(f"QConv2d.from_float needs an nn.Conv2d, got {type(conv).__name__}")
        if conv.padding_mode != "zeros":
            raise InputError(
                f"QConv2d supports padding_mode='zeros' only, got {conv.padding_mode!r}; skip this "
                "layer"
            )
        layer = cls.from_config({**_conv_config(conv), "scheme": qweight.scheme.to_dict()})
        layer.to(conv.weight.device)
        layer._load_qtensor(qweight)
        if conv.bias is not None:
            with torch.no_grad():
                layer.bias.copy_(conv.bias.detach())
        return layer

    def to_float(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` holding the dequantized weight and the bias, on this layer's device."""
        conv = nn.utils.skip_init(
            nn.Conv2d,
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias is not None,
            device=self.weight_packed.device,
        )
        with torch.no_grad():
            conv.weight.copy_(self.dequantized_weight(conv.weight.dtype))
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv

    @classmethod
    def from_config(cls, config: dict) -> QConv2d:
        """Rebuild an empty layer from :meth:`config` (for checkpoint loading)."""
        cfg = dict(config)
        scheme = QScheme.from_dict(cfg.pop("scheme"))
        return cls(
            cfg.pop("in_channels"),
            cfg.pop("out_channels"),
            cfg.pop("kernel_size"),
            scheme=scheme,
            **cfg,
        )

    def config(self) -> dict:
        """What it takes to rebuild this layer empty: JSON-ready."""
        return {**_conv_config(self), "scheme": self.scheme.to_dict()}

    @property
    def kernel(self) -> str:
        """The forced kernel path name (``"dense"`` or ``"reference"``), or ``"auto"``."""
        return self._kernel

    @kernel.setter
    def kernel(self, name: str) -> None:
        if name != "auto":
            kernels.get_kernel(name, "conv")
        self._kernel = name

    def kernel_key(self) -> KernelKey:
        """What the kernel registry selects on (one family, ``"conv"``)."""
        out = self.weight_shape[0]
        return KernelKey(
            family="conv",
            shape=(out, math.prod(self.weight_shape) // out),
            bits=self.scheme.bits,
            device=self.weight_packed.device.type,
            describe=self.scheme.describe(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.run(self, x)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, {super().extra_repr()}"
        )


def _conv_config(conv) -> dict:
    padding = conv.padding if isinstance(conv.padding, str) else list(conv.padding)
    return {
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "kernel_size": list(conv.kernel_size),
        "stride": list(conv.stride),
        "padding": padding,
        "dilation": list(conv.dilation),
        "groups": conv.groups,
        "bias": conv.bias is not None,
    }
