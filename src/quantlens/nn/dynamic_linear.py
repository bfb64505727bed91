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
mean cosine of pooled sentence embeddings vs float is 0.9964 (8-bit symmetric per-token:
0.9973; PyTorch's per-tensor 7-bit dynamic: 0.95, per-channel weights: 0.977).

Kernel paths (``layer.kernel = name`` forces one; ``"auto"`` takes the first that accepts
and whose ``auto`` rule holds for this machine):

=========  ======================================================================  =========
path       what runs                                                               auto when
=========  ======================================================================  =========
int_mm     ``torch._int_mm`` (int8 x int8 -> int32, exact) on the codes ``q``      CUDA (M >
           in [0, 127], then ``s * (ws * acc - z * c) + b``. On CPUs without       16, K, N %
           VNNI/AMX PyTorch runs it as a plain loop (about 1 GOP/s measured on     8 == 0), or
           an AVX2 EPYC); with AVX512-VNNI it is the fastest int8 GEMM here        a CPU with
           (see benchmarks/int8_dynamic.py)                                        VNNI / AMX
fbgemm     ``quantized::linear_with_input_q_dq_qweight_dq_output_fp32`` on the     CPU, x86 /
           per-token-scaled input (scale 1, zero-point 0: the op rounds, the       fbgemm
           int8 GEMM is exact), then ``s * (g - z c) + b``                         engine
reference  dequantize and ``F.linear`` in float32 (same quantized values)          always
fp16       ``quantized::linear_dynamic_fp16`` (fp16 weights, fp32 compute)        fp16, x86
upcast     ``F.linear(x, W.float(), b)``                                           fp16
=========  ======================================================================  =========

The state dict holds plain tensors only (``weight`` int8 or fp16, ``weight_scale``,
``bias``): packed kernel weights are a cache rebuilt on first use and never saved.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from quantlens.errors import InputError, UnknownNameError
from quantlens.nn.kernels import cpu_features
from quantlens.nn.shapes import Shapes

ACT_LEVELS = 127  # activations use q in [0, 127]: 7 bits, no int16 pair overflow on AVX2
WEIGHT_QMAX = 127
DTYPES = {"int8": torch.int8, "float16": torch.float16}
ACTIVATIONS = ("per_token", "per_tensor")
_EPS = 1e-12


def quantize_activations(
    x2d: torch.Tensor, per_token: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 7-bit activation qparams and the scaled input, before rounding.

    Args:
        x2d: ``(M, K)`` float32 input rows.
        per_token: one scale / zero-point per row (else one for the whole tensor).

    Returns:
        ``(xs, s, z)``: ``xs = x * (1 / s) + z`` ``(M, K)`` (``round(xs)`` is the code in
        [0, 127]),
        ``s`` and ``z`` ``(M, 1)`` or ``(1, 1)`` float32 (``z`` integer-valued).
    """
    if per_token:  # (amin + amax: ~10x faster than aminmax(dim=-1) on CPU, measured)
        lo, hi = x2d.amin(dim=-1, keepdim=True), x2d.amax(dim=-1, keepdim=True)  # (M, 1)
    else:
        lo, hi = (t.reshape(1, 1) for t in torch.aminmax(x2d))
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)  # the range holds 0, so zero is exact
    # (ACT_LEVELS - 1) steps: x/s + round(-lo/s) <= 126.5 rounds to <= 127 without a clamp.
    s = ((hi - lo) / (ACT_LEVELS - 1)).clamp_min(_EPS)
    inv = 1.0 / s
    z = torch.round(-lo * inv)
    return torch.addcmul(z, x2d, inv), s, z


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


# --- kernel paths ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DynamicKernel:
    """One way to run a :class:`DynamicLinear` forward.

    Attributes:
        name: the path name (``layer.kernel = name`` forces it).
        dtype: the weight dtype it serves (``"int8"`` or ``"float16"``).
        accepts: ``accepts(layer, x2d) -> None`` if it can run, else the reason it cannot.
        prepare: ``prepare(layer) -> state`` (packed weights; cached on the layer).
        run: ``run(layer, state, x2d) -> y2d`` float32.
        auto: ``auto(x2d) -> bool``: whether ``"auto"`` may pick it for this input on this
            machine (None: always; a path is always usable when forced and ``accepts`` agrees).
        shapes: the weight shapes it runs (:class:`quantlens.nn.shapes.Shapes`, checked
            before ``accepts``; swept by tests/nn/test_kernel_shapes.py).
    """

    name: str
    dtype: str
    accepts: Callable[[DynamicLinear, torch.Tensor], str | None]
    prepare: Callable[[DynamicLinear], object]
    run: Callable[[DynamicLinear, object, torch.Tensor], torch.Tensor]
    auto: Callable[[torch.Tensor], bool] | None = None
    shapes: Shapes = field(default_factory=Shapes)

    def why_not(self, layer: DynamicLinear, x2d: torch.Tensor) -> str | None:
        """Why this path cannot run ``layer`` on ``x2d`` (its shapes, then ``accepts``), or None."""
        return self.shapes.reason(layer.out_features, layer.in_features) or self.accepts(layer, x2d)


_KERNELS: dict[str, DynamicKernel] = {}


def register_dynamic_kernel(kernel: DynamicKernel) -> DynamicKernel:
    """Add a kernel path; paths registered earlier are tried first by ``"auto"``."""
    _KERNELS[kernel.name] = kernel
    return kernel


def dynamic_kernels() -> dict[str, DynamicKernel]:
    """Every registered path by name."""
    return dict(_KERNELS)


def _x86_engine(layer, x2d) -> str | None:
    if x2d.device.type != "cpu":
        return f"it runs on CPU only, the input is on {x2d.device.type}"
    if torch.backends.quantized.engine not in ("x86", "fbgemm"):
        return f"the quantized engine is {torch.backends.quantized.engine!r}, not x86/fbgemm"
    return None


def _fbgemm_prepare(layer: DynamicLinear):
    n = layer.out_features
    qw = torch._make_per_channel_quantized_tensor(
        layer.weight, layer.weight_scale.double(), torch.zeros(n, dtype=torch.long), 0
    )
    packed = torch.ops.quantized.linear_prepack(qw, None)
    c = layer.weight_scale * layer.weight.sum(dim=1, dtype=torch.int32).float()  # (N,)
    return packed, c


def _fbgemm_run(layer, state, x2d):
    packed, c = state
    xs, s, z = quantize_activations(x2d, layer.per_token)
    g = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
        xs, 1.0, 0, packed
    )  # (M, N)
    g = g.addr_(z.squeeze(1), c, alpha=-1) if layer.per_token else g.sub_(z * c)  # sum (q - z) W
    return torch.addcmul(layer.bias, g, s) if layer.bias is not None else g.mul_(s)


def _int_mm_accepts(layer, x2d) -> str | None:
    if x2d.device.type == "cuda" and not (
        x2d.shape[0] > 16 and layer.in_features % 8 == 0 and layer.out_features % 8 == 0
    ):
        return "torch._int_mm on CUDA needs more than 16 rows and K, N multiples of 8"
    return None


def _int_mm_auto(x2d) -> bool:
    """CUDA, or a CPU whose int8 dot-product instructions make PyTorch's int8 GEMM fast."""
    return x2d.device.type == "cuda" or (
        x2d.device.type == "cpu" and bool({"vnni", "amx"} & cpu_features())
    )


def _int_mm_prepare(layer):
    c = (
        layer.weight_scale * layer.weight.sum(dim=1, dtype=torch.int32).float()
    )  # (N,) ws * rowsum(Wq)
    return layer.weight.t(), c  # (K, N) view of the (N, K) weight: the faster layout on CPU


def _codes(x2d, per_token):
    xs, s, z = quantize_activations(x2d, per_token)
    return xs.round_().clamp_(0, ACT_LEVELS), s, z


def _int_mm_run(layer, state, x2d):
    wt, c = state
    q, s, z = _codes(x2d, layer.per_token)  # q in [0, 127]: already an int8 value
    acc = torch._int_mm(q.to(torch.int8), wt)  # (M, N) int32, exact
    y = torch.mul(acc, layer.weight_scale)  # y = s * (ws * acc - z * c) + b
    y.addr_(z.reshape(-1).expand(y.shape[0]), c, alpha=-1)
    y.mul_(s)
    return y.add_(layer.bias) if layer.bias is not None else y


def _reference_run(layer, state, x2d):
    q, s, z = _codes(x2d, layer.per_token)
    w = layer.weight.float() * layer.weight_scale[:, None]
    return F.linear((q - z) * s, w, layer.bias)


def _fp16_prepare(layer):
    return torch.ops.quantized.linear_prepack_fp16(layer.weight.float(), layer.bias)


# torch._int_mm on CPU (torch 2.13) returns wrong sums for K = 1 at any M, N >= 2.
register_dynamic_kernel(
    DynamicKernel(
        "int_mm",
        "int8",
        _int_mm_accepts,
        _int_mm_prepare,
        _int_mm_run,
        auto=_int_mm_auto,
        shapes=Shapes(min_in=2),
    )
)
register_dynamic_kernel(DynamicKernel("fbgemm", "int8", _x86_engine, _fbgemm_prepare, _fbgemm_run))
register_dynamic_kernel(
    DynamicKernel("reference", "int8", lambda layer, x: None, lambda layer: None, _reference_run)
)
register_dynamic_kernel(
    DynamicKernel(
        "fp16",
        "float16",
        _x86_engine,
        _fp16_prepare,
        lambda layer, packed, x2d: torch.ops.quantized.linear_dynamic_fp16(x2d, packed),
    )
)
register_dynamic_kernel(
    DynamicKernel(
        "upcast",
        "float16",
        lambda layer, x: None,
        lambda layer: None,
        lambda layer, state, x2d: F.linear(x2d, layer.weight.float(), layer.bias),
    )
)


# --- the module ------------------------------------------------------------------------------


class DynamicLinear(nn.Module):
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
    ``(N, K)`` int8 or fp16, ``weight_scale`` ``(N,)`` float32 (int8 only), ``bias`` ``(N,)``.

    Example:
        >>> lin = nn.Linear(384, 1536)
        >>> q = DynamicLinear.from_float(lin)
        >>> q(torch.randn(8, 128, 384)).shape
        torch.Size([8, 128, 1536])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        dtype: str = "int8",
        per_channel: bool = True,
        activations: str = "per_token",
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
        self._kernel = "auto"
        self._cache: dict[str, object] = {}

    @property
    def per_token(self) -> bool:
        return self.activations == "per_token"

    @classmethod
    def from_float(
        cls,
        linear: nn.Linear,
        *,
        dtype: str = "int8",
        per_channel: bool = True,
        activations: str = "per_token",
    ) -> DynamicLinear:
        """A DynamicLinear holding ``linear``'s weight quantized (``linear`` is left untouched)."""
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
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach().float())
        return layer.to(linear.weight.device)

    @classmethod
    def from_config(cls, config: dict) -> DynamicLinear:
        """An empty layer from :meth:`config` (for checkpoint loading)."""
        return cls(**config)

    def config(self) -> dict:
        """What it takes to rebuild this layer empty: JSON-ready."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "dtype": self.dtype,
            "per_channel": self.per_channel,
            "activations": self.activations,
        }

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
            path = _KERNELS.get(name)
            if path is None or path.dtype != self.dtype:
                valid = [k for k, p in _KERNELS.items() if p.dtype == self.dtype]
                raise UnknownNameError(
                    f"unknown {self.dtype} kernel path {name!r}; valid: auto, {', '.join(valid)}"
                )
        self._kernel = name

    def kernel_for(self, x2d: torch.Tensor) -> DynamicKernel:
        """The path a forward on ``x2d`` ``(M, K)`` takes."""
        if self._kernel != "auto":
            path = _KERNELS[self._kernel]
            reason = path.why_not(self, x2d)
            if reason:
                raise InputError(
                    f"kernel path {path.name!r} cannot run this layer: {reason}; set layer.kernel "
                    "= 'auto'"
                )
            return path
        for path in _KERNELS.values():
            if path.dtype != self.dtype:
                continue
            if path.auto is not None and not path.auto(x2d):
                continue
            if path.why_not(self, x2d) is None:
                return path
        raise InputError(f"no kernel path runs a {self.dtype} DynamicLinear on {x2d.device.type}")

    def _state_for(self, path: DynamicKernel):
        key = f"{path.name}/{torch.backends.quantized.engine}"
        if key not in self._cache:
            with warnings.catch_warnings():  # PyTorch's quantized-tensor deprecation notice
                warnings.filterwarnings("ignore", message=r".*quantized tensor creation.*")
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                self._cache[key] = path.prepare(self)
        return self._cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise InputError(
                f"expected input with last dimension {self.in_features}, got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise InputError(f"DynamicLinear takes floating-point input, got {x.dtype}")
        x2d = x.reshape(-1, self.in_features).float().contiguous()  # (M, K)
        if x2d.shape[0] == 0:
            return x.new_zeros(*x.shape[:-1], self.out_features)
        path = self.kernel_for(x2d)
        y = path.run(self, self._state_for(path), x2d)  # (M, N)
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    # the packed-weight cache never enters state dicts, copies or pickles -----------------

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._cache = {}
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, recurse=True):
        self._cache = {}
        return super()._apply(fn, recurse)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

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
