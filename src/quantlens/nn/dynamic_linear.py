"""DynamicLinear: an ``nn.Linear`` with int8 (or fp16) weights whose activations are
quantized on the fly, one scale per token.

The math, for an input row ``x`` (one token, ``K`` features) and weight ``W`` ``(N, K)``::

    W ~ ws[n] * Wq[n, k]               Wq int8 in [-127, 127], ws one scale per output channel
    x ~ s * (q - z)                    q in [0, 127], s and z computed from this row's min/max
    y[n] = s * ws[n] * (sum_k q[k] Wq[n, k] - z * sum_k Wq[n, k]) + b[n]
         = s * (g[n] - z * c[n]) + b[n]    with g = the int8 GEMM, c[n] = ws[n] * sum_k Wq[n, k]

Why 7-bit unsigned activations with a per-token zero-point: x86 CPUs without VNNI
(AVX2) multiply uint8 x int8 pairs and add two products in a saturating int16
(``vpmaddubsw``), so activations in [0, 255] against int8 weights can overflow -- the
reason PyTorch's ``reduce_range`` exists. With 128 levels the pair sum stays below
2**15. The per-token *asymmetric* range wins back what the lost bit costs: on MiniLM the
pooled sentence embeddings stay closer to float than with PyTorch's per-tensor or
per-channel dynamic quantization (``mean_cosine`` in the ``int8_dynamic`` section of
docs/performance.md, written by benchmarks/int8_dynamic.py).

Kernel paths (:mod:`quantlens.nn.kernels.dynamic`, chosen by the one rule of
:mod:`quantlens.nn.kernels.registry`; ``layer.kernel = name`` forces one, ``"auto"`` takes
the lowest-priority case that matches and whose path can run the layer):

=========  ======================================================================  =========
path       what runs                                                               auto when
=========  ======================================================================  =========
compiled   ``quantlens::dynamic_linear_int8`` (nn/csrc/dynamic_int8.cpp, built by   CPU with
           ``python -m quantlens.nn.build_kernels``): int_mm's codes, GEMM and     VNNI / AMX,
           output bit for bit, in three passes (one per row for the codes, the     where it is
           GEMM, one for ``s * ws * acc + b``) instead of ~16; where it is not     built
           built, one line is logged and int_mm runs. Under autograd (an input
           or bias that requires grad) it runs int_mm's ATen ops
int_mm     ``torch._int_mm`` (int8 x int8 -> int32, exact) on ``q - z`` in         CUDA (M >
           [-127, 127] (the codes less their zero-point, so no correction pass     16, K, N %
           follows), then ``s * ws * acc + b`` in two passes. On CPUs without      8 == 0), or
           VNNI/AMX PyTorch runs it as a plain loop, far slower than fbgemm;       a CPU with
           with AVX512-VNNI it is the fastest int8 GEMM (benchmarks/int8_dynamic)  VNNI / AMX
fbgemm     ``quantized::linear_with_input_q_dq_qweight_dq_output_fp32`` on the     CPU, x86 /
           per-token-scaled input (scale 1, zero-point 0: the op rounds, the       fbgemm
           int8 GEMM is exact), then ``s * (g - z c) + b``                         engine
reference  dequantize and ``F.linear`` in float32 (same quantized values)          always
fp16       ``quantized::linear_dynamic_fp16`` (fp16 weights, fp32 compute)        fp16, x86
upcast     ``F.linear(x, W.float(), b)``                                           fp16
=========  ======================================================================  =========

Small calls (a few tokens) run on one thread or on torch's count, whichever their timings
say is faster (``layer.thread_policy``, :mod:`quantlens.nn.threads`).

The state dict holds plain tensors only (``weight`` int8 or fp16, ``weight_scale``,
``bias``): packed kernel weights are a cache rebuilt on first use and never saved.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from quantlens.errors import InputError, UnknownNameError
from quantlens.nn.act_quant import ACT_LEVELS, quantize_activations
from quantlens.nn.input_scale import BUFFER, input_scale_of, scale_input, set_input_scale
from quantlens.nn.kernel_cache import KernelCache
from quantlens.nn.kernels import registry
from quantlens.nn.kernels.registry import KernelKey, KernelPath
from quantlens.nn.registry import DynamicSpec, register_quantized
from quantlens.nn.threads import check_policy

WEIGHT_QMAX = 127
DTYPES = {"int8": torch.int8, "float16": torch.float16}
ACTIVATIONS = ("per_token", "per_tensor")
DynamicDtype = Literal["int8", "float16"]
Activations = Literal["per_token", "per_tensor"]
_EPS = 1e-12

__all__ = [
    "ACTIVATIONS",
    "ACT_LEVELS",
    "DTYPES",
    "DynamicLinear",
    "dynamic_kernels",
    "quantize_activations",
    "quantize_weight",
]


def quantize_weight(
    weight: torch.Tensor, per_channel: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 weight codes and per-output-channel scales.

    Returns:
        ``(Wq, ws)``: ``Wq`` int8 ``(N, K)`` in [-127, 127]; ``ws`` float32 ``(N,)`` (all
        equal when ``per_channel`` is False).
    """
    w = weight.detach().float()
    amax = w.abs().amax(dim=1) if per_channel else w.abs().amax().expand(w.shape[0])
    ws = (amax / WEIGHT_QMAX).clamp_min(_EPS)  # (N,)
    wq = torch.round(w / ws[:, None]).clamp_(-WEIGHT_QMAX, WEIGHT_QMAX).to(torch.int8)
    return wq, ws.contiguous()


def dynamic_kernels() -> dict[str, KernelPath]:
    """Every registered :class:`DynamicLinear` path by name (the ``"dynamic"`` family of
    :mod:`quantlens.nn.kernels.registry`).

    Example:
        >>> sorted(dynamic_kernels())
        ['compiled', 'fbgemm', 'fp16', 'int_mm', 'reference', 'upcast']
    """
    return registry.kernel_paths("dynamic")


# --- the module ------------------------------------------------------------------------------


@register_quantized(nn.Linear, family="dynamic")
class DynamicLinear(KernelCache):
    """``y = x @ W.T + b`` with ``W`` int8 (or fp16) and ``x`` quantized on the fly.

    Args:
        in_features, out_features: as ``nn.Linear``.
        bias: whether there is a (float32) bias.
        dtype: ``"int8"`` (int8 GEMM, activations quantized per forward) or ``"float16"``
            (weights stored in fp16, computed in fp32: half the bytes, float accuracy).
        per_channel: int8 only; one weight scale per output channel (else one per tensor,
            stored repeated per channel).
        activations: int8 only; ``"per_token"`` (one scale and zero-point per row) or
            ``"per_tensor"``.

    Buffers (zeros until :meth:`from_float` or ``load_state_dict`` fills them): ``weight``
    ``(N, K)`` int8 or fp16, ``weight_scale`` ``(N,)`` float32 (int8 only), ``bias`` ``(N,)``;
    ``input_scale`` ``(K,)`` only where SmoothQuant could not fold its scale: the input is
    divided by it before it is quantized (:mod:`quantlens.nn.input_scale`).

    Example:
        >>> lin = nn.Linear(384, 1536)
        >>> q = DynamicLinear.from_float(lin)
        >>> q(torch.randn(8, 128, 384)).shape
        torch.Size([8, 128, 1536])
    """

    weight: torch.Tensor
    weight_scale: torch.Tensor
    bias: torch.Tensor | None
    input_scale: torch.Tensor | None
    _cache: dict[Any, Any]
    # class-level defaults: found without nn.Module.__getattr__'s miss (~3 us per call each)
    allow_activation_quant = True  # automatic dispatch may round the input (kernel_key)
    _thread_policy = "auto"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        dtype: DynamicDtype = "int8",
        per_channel: bool = True,
        activations: Activations = "per_token",
    ) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise UnknownNameError(
                f"unknown dtype {dtype!r} for DynamicLinear; valid: {', '.join(DTYPES)}"
            )
        if activations not in ACTIVATIONS:
            raise UnknownNameError(
                f"unknown activations {activations!r}; valid: {', '.join(ACTIVATIONS)}"
            )
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype, self.per_channel, self.activations = dtype, bool(per_channel), activations
        self.register_buffer(
            "weight", torch.zeros(self.out_features, self.in_features, dtype=DTYPES[dtype])
        )
        if dtype == "int8":
            self.register_buffer("weight_scale", torch.ones(self.out_features))
        self.register_buffer("bias", torch.zeros(self.out_features) if bias else None)
        self.register_buffer(BUFFER, None)
        self._kernel = "auto"
        self._cache: dict[Any, Any] = {}

    @property
    def per_token(self) -> bool:
        return self.activations == "per_token"

    @classmethod
    def empty(cls, linear: nn.Linear, spec: DynamicSpec | None = None) -> DynamicLinear:
        """The structure :meth:`from_float` builds for ``linear`` and ``spec``, with
        placeholder buffers (what a checkpoint's state dict loads into).

        Example:
            >>> DynamicLinear.empty(nn.Linear(64, 32), DynamicSpec()).weight.shape
            torch.Size([32, 64])
        """
        spec = spec or DynamicSpec()
        return cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            dtype=spec.dtype,
            per_channel=spec.per_channel,
            activations=spec.activations,
        )

    @classmethod
    def from_float(
        cls,
        linear: nn.Linear,
        spec: DynamicSpec | None = None,
        *,
        dtype: DynamicDtype = "int8",
        per_channel: bool = True,
        activations: Activations = "per_token",
    ) -> DynamicLinear:
        """A DynamicLinear holding ``linear``'s weight quantized (``linear`` is left untouched).

        Args:
            linear: the float layer.
            spec: how to quantize it; when given, it replaces the keyword arguments.
            dtype, per_channel, activations: see the class docstring.

        Returns:
            The new layer, on ``linear``'s device.
        """
        if spec is not None:
            dtype, per_channel, activations = spec.dtype, spec.per_channel, spec.activations
        if not isinstance(linear, nn.Linear):
            raise InputError(
                f"DynamicLinear.from_float needs an nn.Linear, got {type(linear).__name__}"
            )
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            dtype=dtype,
            per_channel=per_channel,
            activations=activations,
        )
        with torch.no_grad():
            if dtype == "int8":
                wq, ws = quantize_weight(linear.weight, per_channel)
                layer.weight.copy_(wq)
                layer.weight_scale.copy_(ws)
            else:
                layer.weight.copy_(linear.weight.detach().to(torch.float16))
            if linear.bias is not None and layer.bias is not None:  # made with bias= above
                layer.bias.copy_(linear.bias.detach().float())
        set_input_scale(layer, input_scale_of(linear))
        return layer.to(linear.weight.device)

    @classmethod
    def from_config(cls, config: dict) -> DynamicLinear:
        """An empty layer from :meth:`config` (for checkpoint loading)."""
        layer = cls(**{k: v for k, v in config.items() if k != BUFFER})
        if config.get(BUFFER):
            set_input_scale(layer, torch.ones(layer.in_features))
        return layer

    def config(self) -> dict:
        """What it takes to rebuild this layer empty: JSON-ready."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "dtype": self.dtype,
            "per_channel": self.per_channel,
            "activations": self.activations,
        } | ({BUFFER: True} if self.input_scale is not None else {})

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the kernels compute with ``(N, K)``."""
        if self.dtype == "int8":
            return self.weight.float() * self.weight_scale[:, None]
        return self.weight.float()

    # kernel selection --------------------------------------------------------------------

    @property
    def kernel(self) -> str:
        """The forced kernel path name, or ``"auto"``."""
        return self._kernel

    @kernel.setter
    def kernel(self, name: str) -> None:
        if name != "auto":
            registry.get_kernel(name, "dynamic", self.dtype)
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
        """What the kernel registry selects on: int8 or float16 weights of this shape."""
        return KernelKey(
            family="dynamic",
            shape=(self.out_features, self.in_features),
            bits=8 if self.dtype == "int8" else 16,
            dtype=self.dtype,
            allow_activation_quant=True,
            device=self.weight.device.type,
            describe=f"this {self.dtype} DynamicLinear",
        )

    def kernel_for(self, x2d: torch.Tensor) -> KernelPath:
        """The path a forward on ``x2d`` ``(M, K)`` takes."""
        return registry.select(self, x2d.shape[0], x2d.dtype, x2d.device.type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise InputError(
                f"expected input with last dimension {self.in_features}, got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise InputError(f"DynamicLinear takes floating-point input, got {x.dtype}")
        x2d = x.reshape(-1, self.in_features)  # (M, K)
        if x2d.dtype != torch.float32:
            x2d = x2d.float()
        x2d = scale_input(self, x2d)  # before the activations are quantized
        if x2d.shape[0] == 0:
            return x.new_zeros(*x.shape[:-1], self.out_features)
        y = registry.run(self, x2d.contiguous())  # (M, N) float32
        if x.dtype != torch.float32:
            y = y.to(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        text = (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, "
        )
        if self.dtype == "int8":
            weights = "per-channel" if self.per_channel else "per-tensor"
            return (
                text + f"int8 {weights} weights, {self.activations.replace('_', '-')} activations"
            )
        return text + "float16 weights, float32 compute"
