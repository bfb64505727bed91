"""QLinear: a weight-only quantized ``nn.Linear`` (packed 1..8-bit codes, float activations)."""

from __future__ import annotations

import torch
from torch import nn

from quantlens.core.qtensor import QTensor
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError
from quantlens.nn import kernels
from quantlens.nn.input_scale import BUFFER, input_scale_of, scale_input, set_input_scale
from quantlens.nn.kernels.registry import KernelKey
from quantlens.nn.packed import PackedWeight
from quantlens.nn.registry import register_quantized
from quantlens.nn.threads import check_policy


@register_quantized(nn.Linear)
class QLinear(PackedWeight):
    """``y = x @ W.T + b`` with ``W`` stored packed (see :mod:`quantlens.nn.packed`).

    ``forward`` runs through the fastest kernel path for the layer's scheme, the number
    of tokens and the input dtype (:mod:`quantlens.nn.kernels` documents which and their
    tolerance); set ``layer.kernel = "reference"`` (or any path name) to force one.

    Args:
        in_features, out_features: as ``nn.Linear``.
        bias: whether there is a (float) bias.
        scheme: how the weight ``(out_features, in_features)`` is quantized:
            per-tensor, per-channel (axis 0) or per-group (axis -1), uniform or codebook.
        device: where the buffers live.
        dtype: the bias dtype (default float32).
        allow_activation_quant: let automatic dispatch pick paths that also round the
            input to 8 bits (W8A8 ``fbgemm``: on large layers faster than float32 at every
            batch measured, see docs/performance.md, but rounding outlier activations, as
            in BERT, costs accuracy). Default False: activations stay float, as weight-only
            promises.

    Buffers are zeros until :meth:`from_float` or ``load_state_dict`` fills them, so a
    checkpoint loads into ``QLinear(in, out, bias=..., scheme=...)`` built from its config.
    ``input_scale`` ``(in_features,)`` is None unless AWQ / SmoothQuant gave the layer a
    scale it could not fold: then ``y = W' (x / input_scale)``
    (:mod:`quantlens.nn.input_scale`).

    Example:
        >>> lin = nn.Linear(512, 256)
        >>> scheme = ql.QScheme(bits=4, symmetric=False, granularity="per_group", group_size=128)
        >>> q = QLinear.from_float(lin, ql.quantize_tensor(lin.weight.detach(), scheme))
        >>> q(torch.randn(8, 512)).shape
        torch.Size([8, 256])
    """

    _thread_policy = "auto"  # a class default: no nn.Module.__getattr__ miss on every call
    input_scale: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool,
        scheme: QScheme,
        device=None,
        dtype: torch.dtype = torch.float32,
        allow_activation_quant: bool = False,
    ) -> None:
        super().__init__()
        self.allow_activation_quant = bool(allow_activation_quant)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self._init_weight((self.out_features, self.in_features), scheme, device)
        if bias:
            self.bias = nn.Parameter(
                torch.zeros(self.out_features, device=device, dtype=dtype), requires_grad=False
            )
        else:
            self.register_parameter("bias", None)
        self.register_buffer(BUFFER, None)
        self._kernel = "auto"

    @classmethod
    def empty(cls, linear: nn.Linear, scheme: QScheme) -> QLinear:
        """The structure :meth:`from_float` builds for ``linear`` and ``scheme``, with zero
        buffers (what a checkpoint's state dict loads into).

        Example:
            >>> QLinear.empty(nn.Linear(64, 32), ql.QScheme(bits=4)).weight_shape
            (32, 64)
        """
        return cls(
            linear.in_features, linear.out_features, bias=linear.bias is not None, scheme=scheme
        )

    @classmethod
    def from_float(
        cls, linear: nn.Linear, qweight: QTensor, *, allow_activation_quant: bool = False
    ) -> QLinear:
        """A QLinear holding ``qweight`` (``linear.weight`` quantized) and ``linear``'s bias
        (and its ``input_scale``, if AWQ gave the float layer one).

        Args:
            linear: the float layer (left untouched).
            qweight: ``ql.quantize_tensor(linear.weight, scheme)`` or an algorithm's result
                with the same shape.
            allow_activation_quant: see the class docstring.
        Returns:
            A new QLinear on ``linear``'s device.
        """
        if not isinstance(linear, nn.Linear):
            raise InputError(f"QLinear.from_float needs an nn.Linear, got {type(linear).__name__}")
        bias = linear.bias
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=bias is not None,
            scheme=qweight.scheme,
            device=linear.weight.device,
            dtype=bias.dtype if bias is not None else torch.float32,
            allow_activation_quant=allow_activation_quant,
        )
        layer._load_qtensor(qweight)
        if bias is not None:
            with torch.no_grad():
                layer.bias.copy_(bias.detach())
        set_input_scale(layer, input_scale_of(linear))
        return layer

    def to_float(self) -> nn.Linear:
        """An ``nn.Linear`` holding the dequantized weight and the bias (what ``from_float``
        was given, up to rounding), on this layer's device; an input scale is folded back
        into the weight's columns (``W' / s``), so the float layer computes the same."""
        linear = nn.utils.skip_init(
            nn.Linear,
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight_packed.device,
        )
        with torch.no_grad():
            linear.weight.copy_(self.dequantized_weight(linear.weight.dtype))
            if self.input_scale is not None:
                linear.weight.div_(self.input_scale.to(linear.weight.dtype))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    @classmethod
    def from_config(cls, config: dict) -> QLinear:
        """Rebuild an empty layer from :meth:`config` (for checkpoint loading)."""
        layer = cls(
            config["in_features"],
            config["out_features"],
            bias=config["bias"],
            scheme=QScheme.from_dict(config["scheme"]),
            allow_activation_quant=config.get("allow_activation_quant", False),
        )
        if config.get(BUFFER):
            set_input_scale(layer, torch.ones(layer.in_features))
        return layer

    def config(self) -> dict:
        """What it takes to rebuild this layer empty: JSON-ready."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "scheme": self.scheme.to_dict(),
            "allow_activation_quant": self.allow_activation_quant,
        } | ({BUFFER: True} if self.input_scale is not None else {})

    @property
    def kernel(self) -> str:
        """The forced kernel path name, or ``"auto"``."""
        return self._kernel

    @kernel.setter
    def kernel(self, name: str) -> None:
        if name != "auto":
            kernels.get_kernel(name)
        self._kernel = name

    @property
    def thread_policy(self) -> str:
        """How small calls pick their thread count: ``"auto"`` (time both, keep the faster),
        ``"all"`` or ``"one"`` (see :mod:`quantlens.nn.threads`)."""
        return self._thread_policy

    @thread_policy.setter
    def thread_policy(self, policy: str) -> None:
        self._thread_policy = check_policy(policy)

    def kernel_key(self) -> KernelKey:
        """What the kernel registry selects on: the scheme's bits, the weight's shape."""
        return KernelKey(
            family="weight_only",
            shape=(self.out_features, self.in_features),
            bits=self.scheme.bits,
            allow_activation_quant=self.allow_activation_quant,
            device=self.weight_packed.device.type,
            describe=self.scheme.describe(),
        )

    def kernel_for(self, tokens: int = 1, dtype: torch.dtype = torch.float32) -> str:
        """The path name a forward with ``tokens`` rows of ``dtype`` input takes."""
        return kernels.select(self, tokens, dtype).name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise InputError(
                f"expected input with last dimension {self.in_features}, got shape {tuple(x.shape)}"
            )
        if x.dtype not in kernels.FLOAT_DTYPES:
            raise InputError(f"QLinear takes float32/bfloat16/float16 input, got {x.dtype}")
        y = kernels.run(self, scale_input(self, x).reshape(-1, self.in_features))
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, {super().extra_repr()}"
            + (", input_scale" if self.input_scale is not None else "")
        )
