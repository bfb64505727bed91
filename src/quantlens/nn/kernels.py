"""Kernel paths for weight-only layers: which matmul runs a :class:`QLinear`, and when.

Every path is a :class:`KernelPath` in a registry. A path says which weight formats it can
run (``accepts``), builds its kernel-format weight once per layer (``prepare``, cached on the
layer, never in the state dict, rebuilt after ``load_state_dict``/``.to()``), runs a 2-D
``(tokens, in_features)`` input (``run``), and lists the :class:`Case` s it serves under
automatic dispatch. ``select`` takes, among the cases of all paths that match the layer's
bits, the number of tokens (product of the input's leading dims), the input dtype and the
CPU's features, the one of lowest ``priority`` whose path accepts the layer's weight
format; ``dense`` is the fallback that always runs.

Paths. Tolerance = bound on ``||y - ref|| / ||ref||`` against ``reference`` for float32
and bfloat16 input, checked by tests/nn for every scheme at batch 1/8/64 (largest seen
there on Gaussian inputs in brackets). Extra memory = what the cached kernel weight adds
per weight element, on top of the packed codes.

==========  ====================================================  =========  ========
path        what runs                                             tolerance  memory
==========  ====================================================  =========  ========
reference   dequantize (float32) on every call, then F.linear     exact      0
            in float32; no cache. The definition.
dense       cached float32 dequantized weight, F.linear in        exact      4 B
            float32 (input cast up, output cast back)
dense_bf16  cached bfloat16 dequantized weight, F.linear in bf16  1e-2       2 B
                                                                  (3.2e-3)
int4pack    ``torch._weight_int4pack_mm_for_cpu``, bf16           1e-2       0.5 B
            activations: uniform codes of <= 4 bits, per-group    (3.6e-3)
            (multiple of 32 along in_features), per-channel or
            per-tensor; in_features a multiple of 32,
            out_features of 16. ``w = s*(c - 8) + offset`` with
            ``offset = s*(8 - z)`` (codes under 4 bits are
            shifted so that the offset is exactly 0).
int8pack    ``torch._weight_int8pack_mm``, bf16 activations:      1e-2       1 B
            uniform per-channel / per-tensor codes of any width;  (3.9e-3)
            in_features a multiple of 16 (torch 2.13 segfaults
            or returns wrong numbers for any other width, at
            every batch). 8-bit asymmetric uses ``c - 128``
            plus the rank-1 correction ``sum(x) * s*(128 - z)``.
fbgemm      ``torch.ops.quantized.linear_dynamic`` (W8A8: the     4e-2       1 B
            input is quantized to 8 bits per call, reduce_range) (2.1e-2)
            on one int8 scale per output row: per-row uniform
            codes as they are, any other scheme (per-group,
            codebooks) re-quantized from the dequantized weight
            to symmetric int8 per row. Automatic dispatch uses
            it only for layers with ``allow_activation_quant``
            (off by default: outlier activations, as in BERT,
            suffer; MiniLM int8 mean cosine 0.9995 -> 0.965).
==========  ====================================================  =========  ========

Automatic choice (benchmarks/weight_only_layers.py; results in benchmarks/results/
weight_only_layers*.json: speed-up over float32 in the same run, 2 threads).

CPUs with avx512_bf16 (measured on a 2-core AVX-512 EPYC, weight_only_layers.json;
int4 g128 / int8 per-channel, fp32 input): 4096x4096 and 4096x11008 at 1 token: int4pack
4.8-6.9x, int8pack 4.0-5.0x (dense_bf16 1.7-2.0x, dense 0.8-1.2x); at 8 tokens: int4pack
3.6-6.7x, int8pack 3.3-5.8x, dense_bf16 2.9-5.5x; at 64 tokens: int4pack 1.4-2.3x,
int8pack 1.3-2.0x, dense_bf16 2.9-5.1x. MiniLM's shapes (weight_only_layers_minilm.json):
384x1536 and 1536x384 at 1 token: int4pack 2.6-4.9x, int8pack 2.6-4.8x vs dense 0.9-1.0x;
384x384 at 1 token: int4pack and int8pack 0.8x (its 0.6 MB float weight stays in L2); at 32
and 1024 tokens dense_bf16 1.0-1.9x vs dense 0.9-1.0x. bf16 compute keeps MiniLM int8 at
mean embedding cosine 0.99979 vs 0.99980 in float32. Hence:

- < 16 tokens: <= 4-bit uniform codes -> ``int4pack`` (priority 10); per-row uniform codes
  -> ``int8pack`` (25), whatever the layer's size;
- >= 16 tokens, any float input -> ``dense_bf16`` (30).

Other CPUs (measured on a 2-core AVX2 EPYC, no bf16 instructions, so bf16 matmuls are
emulated: dense_bf16 runs at 0.3x fp32 at batch 64; batch-1 ratios from a 1-thread run):
fbgemm 1.6-3.5x at batch 1, 3.4-6.5x at batch 8, 1.6-2.2x at batch 64; int4pack 1.0-1.3x,
2.1x, 0.74-0.84x; int8pack 1.0-1.4x, 2.3-2.4x, 0.6-0.8x; dense 0.9-1.1x throughout. Hence:

- layers under 2M weights (the float32 weight fits in cache: 384x1536 at batch 1, fp32
  0.077 ms vs int8pack 0.134 / int4pack 0.137) -> ``dense`` (priority 50); otherwise
  <= 4-bit uniform codes with < 32 tokens -> ``int4pack`` (60); per-row uniform codes
  with < 32 tokens -> ``int8pack`` (70); everything else (per-group 5..8-bit, codebooks,
  >= 32 tokens) -> ``dense`` (float32 is the fastest matmul there).

Everywhere, layers with ``allow_activation_quant=True``: any scheme, batch and dtype ->
``fbgemm`` (priority 20) unless int4pack serves the batch (1-15 tokens on avx512_bf16
CPUs: 0.72 vs 0.79 ms on 4096x4096, 1.80 vs 1.93 ms on 4096x11008). W8A8 runs at 6.5-15.6x
float32 at 8 tokens and 5.4-9.2x at 64 on the AVX-512 CPU (3.4-6.5x and 1.6-2.2x on AVX2),
and beats int8pack at 1 token (4096x11008: 2.05 vs 2.50 ms).

How to add a path: declare the shapes the underlying op runs (:class:`Shapes`; the sweep in
tests/nn/test_kernel_shapes.py runs every registered path over widths 1-130 at 1-17 tokens
in a child process, so that a crash fails the test), write
``accepts(layer) -> str | None`` (why it cannot run the layer's weight format, or None),
``prepare(layer, dtype) -> state`` and ``run(layer, state, x) -> y`` (``x`` already in the path's
compute dtype, ``y`` with bias added), then ``register_kernel(KernelPath(...))`` with the cases it
should win. Force a path with ``layer.kernel = "name"`` or, for a whole model,
``with force_kernel(model, "name"):``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from quantlens.errors import SchemeError, UnknownNameError
from quantlens.nn.shapes import Shapes

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def cpu_features() -> frozenset[str]:
    """The CPU features the automatic choice can key on: ``avx2``, ``avx512``,
    ``avx512_bf16``, ``vnni`` (AVX512-VNNI int8 dot products), ``amx`` (those torch reports
    for this machine)."""
    global _FEATURES
    if _FEATURES is None:
        probes = {
            "avx2": "_is_avx2_supported",
            "avx512": "_is_avx512_supported",
            "avx512_bf16": "_is_avx512_bf16_supported",
            "vnni": "_is_vnni_supported",
            "amx": "_is_amx_tile_supported",
        }
        found = set()
        for name, fn in probes.items():
            try:
                if getattr(torch.cpu, fn)():
                    found.add(name)
            except (AttributeError, RuntimeError):
                pass
        _FEATURES = frozenset(found)
    return _FEATURES


_FEATURES: frozenset[str] | None = None


@dataclass(frozen=True)
class Case:
    """A situation a path serves under automatic dispatch.

    Args:
        bits: code widths served.
        tokens: ``(low, high)``: served when ``low <= tokens < high`` (``high`` None: no limit).
        dtypes: input dtypes served.
        needs: CPU features (see :func:`cpu_features`) that must all be present.
        numel: ``(low, high)`` range of the layer's weight elements (``high`` None: no limit).
        priority: among all matching cases of all paths, the lowest wins.
    """

    bits: tuple[int, ...] = tuple(range(1, 9))
    tokens: tuple[int, int | None] = (1, None)
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES
    needs: tuple[str, ...] = ()
    numel: tuple[int, int | None] = (0, None)
    priority: int = 50

    def matches(self, bits: int, tokens: int, dtype: torch.dtype, numel: int = 0) -> bool:
        return (
            bits in self.bits
            and dtype in self.dtypes
            and _within(tokens, self.tokens)
            and _within(numel, self.numel)
            and cpu_features().issuperset(self.needs)
        )


def _within(value: int, bounds: tuple[int, int | None]) -> bool:
    low, high = bounds
    return low <= value and (high is None or value < high)


@dataclass(frozen=True)
class KernelPath:
    """One way to compute ``x @ W.T + b`` for a weight-only layer (see the module docstring).

    Args:
        name: what ``layer.kernel = name`` selects.
        accepts: ``layer -> None`` if the path can run this layer's weight, else the reason.
        prepare: ``(layer, compute_dtype) -> state``, cached on the layer.
        run: ``(layer, state, x2d) -> y2d`` with ``x2d`` in ``compute_dtype``.
        compute_dtype: the dtype the path computes in (None: the input's).
        cases: when automatic dispatch picks it.
        rtol: bound on ``||y - ref|| / ||ref||`` against the reference path.
        quantizes_activations: the path rounds the input to integers (W8A8); automatic
            dispatch skips it for layers with ``allow_activation_quant = False``.
        shapes: the weight shapes it runs (checked before ``accepts``).
    """

    name: str
    accepts: Callable[[nn.Module], str | None]
    prepare: Callable[[nn.Module, torch.dtype], Any]
    run: Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]
    compute_dtype: torch.dtype | None = None
    cases: tuple[Case, ...] = ()
    rtol: float = 0.0
    quantizes_activations: bool = False
    shapes: Shapes = field(default_factory=Shapes)


_PATHS: dict[str, KernelPath] = {}
FALLBACK = "dense"


def register_kernel(path: KernelPath) -> KernelPath:
    """Add (or replace) a kernel path in the registry."""
    _PATHS[path.name] = path
    return path


def kernel_paths() -> dict[str, KernelPath]:
    """All registered paths by name."""
    return dict(_PATHS)


def get_kernel(name: str) -> KernelPath:
    if name not in _PATHS:
        raise UnknownNameError(
            f"unknown kernel path {name!r}; valid: auto, {', '.join(kernel_paths())}"
        )
    return _PATHS[name]


def why_not(layer: nn.Module, name: str) -> str | None:
    """Why path ``name`` cannot run ``layer`` (its declared shapes, then ``accepts``; cached
    per layer), or None if it can."""
    path = get_kernel(name)
    n, k = layer.weight_shape[0], layer.weight_shape[1]
    return layer.cached(("accepts", name), lambda: path.shapes.reason(n, k) or path.accepts(layer))


def select(layer: nn.Module, tokens: int, dtype: torch.dtype) -> KernelPath:
    """The path ``layer`` runs for ``tokens`` rows of ``dtype`` input: the forced one, else
    the path of the lowest-priority matching case that accepts the layer's weight, else
    the fallback ``dense``."""
    forced = layer.kernel
    if forced != "auto":
        reason = why_not(layer, forced)
        if reason:
            raise SchemeError(
                f"kernel path {forced!r} cannot run {layer.scheme.describe()}: {reason}; "
                "set layer.kernel = 'auto'"
            )
        return _PATHS[forced]
    bits, numel = layer.scheme.bits, layer.weight_shape[0] * layer.weight_shape[1]
    allow_aq = getattr(layer, "allow_activation_quant", False)
    matches = [
        (case.priority, path.name)
        for path in _PATHS.values()
        for case in path.cases
        if (allow_aq or not path.quantizes_activations) and case.matches(bits, tokens, dtype, numel)
    ]
    for _, name in sorted(matches):
        if why_not(layer, name) is None:
            return _PATHS[name]
    return _PATHS[FALLBACK]


def run(layer: nn.Module, x2d: torch.Tensor, path: KernelPath | None = None) -> torch.Tensor:
    """``layer``'s output for a 2-D input, through ``path`` (default: :func:`select`).

    The choice and the prepared state are memoised per (tokens, dtype, forced kernel) in
    the layer's cache, so a call costs one dict lookup besides the kernel itself."""
    key = (
        "run",
        x2d.shape[0],
        x2d.dtype,
        layer.kernel,
        getattr(layer, "allow_activation_quant", False),
        path.name if path else None,
    )
    hit = layer._cache.get(key)
    if hit is None:
        chosen = path or select(layer, x2d.shape[0], x2d.dtype)
        compute = chosen.compute_dtype or x2d.dtype
        state = layer.cached(
            ("kernel", chosen.name, compute), lambda: chosen.prepare(layer, compute)
        )
        hit = layer._cache[key] = (chosen, compute, state)
    chosen, compute, state = hit
    return chosen.run(layer, state, x2d.to(compute)).to(x2d.dtype)


@contextlib.contextmanager
def force_kernel(model: nn.Module, name: str) -> Iterator[None]:
    """Run every weight-only layer of ``model`` through path ``name`` inside the block.

    Example:
        >>> with force_kernel(qmodel, "reference"):
        ...     y_ref = qmodel(x)
    """
    if name != "auto":
        get_kernel(name)
    layers = [m for m in model.modules() if hasattr(m, "kernel")]
    saved = [m.kernel for m in layers]
    try:
        for m in layers:
            m.kernel = name
        yield
    finally:
        for m, k in zip(layers, saved):
            m.kernel = k


# --- helpers shared by the paths -------------------------------------------------------


def _bias(layer: nn.Module, dtype: torch.dtype) -> torch.Tensor | None:
    return None if layer.bias is None else layer.bias.detach().to(dtype)


def _on_cpu(layer: nn.Module) -> str | None:
    return None if layer.weight_packed.device.type == "cpu" else "it is a CPU kernel"


def _uniform_per_row(layer: nn.Module) -> str | None:
    s = layer.scheme
    if s.codebook is not None:
        return f"it needs uniform codes, not the {s.codebook} codebook"
    if s.granularity == "per_group" or (s.granularity == "per_channel" and s.axis % 2 != 0):
        return "it needs one scale per output channel (per-channel axis 0 or per-tensor)"
    return _on_cpu(layer)


def _row_scale_zero(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-row float32 scale and int32 unsigned zero-point, shape ``(out,)``."""
    n = layer.weight_shape[0]
    return layer.scale.float().expand(n).contiguous(), layer.unsigned_zero_point().expand(
        n
    ).contiguous()


# --- reference and dense ------------------------------------------------------------------


def _reference_run(layer, state, x):
    return F.linear(x, layer.dequantized_weight(torch.float32), _bias(layer, torch.float32))


def _dense_prepare(layer, dtype):
    return layer.dequantized_weight(dtype), _bias(layer, dtype)


def _dense_run(layer, state, x):
    weight, bias = state
    return F.linear(x, weight, bias)


# --- int4pack: torch._weight_int4pack_mm_for_cpu ----------------------------------------------

INT4_GROUPS = (256, 128, 64, 32)  # group sizes the kernel takes, largest (fewest scales) first


def _int4_group(layer) -> int | None:
    s, k = layer.scheme, layer.weight_shape[1]
    span = s.group_size if s.granularity == "per_group" else k
    return next((g for g in INT4_GROUPS if span % g == 0 and k % g == 0), None)


def _int4_accepts(layer) -> str | None:
    s = layer.scheme
    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        return "this torch has no _weight_int4pack_mm_for_cpu"
    if s.codebook is not None or s.bits > 4:
        return "it needs uniform codes of at most 4 bits"
    if s.granularity == "per_channel" and s.axis % 2 != 0:
        return "it needs per-channel scales along axis 0"
    if s.granularity == "per_group" and (s.axis % 2 != 1 or layer.weight_shape[1] % s.group_size):
        return "it needs whole groups along in_features"
    if _int4_group(layer) is None:
        return f"it needs groups (or in_features) that are a multiple of {INT4_GROUPS[-1]}"
    return _on_cpu(layer)


def _int4_prepare(layer, dtype):
    n, k = layer.weight_shape
    g = _int4_group(layer)
    scale = layer.scale.float()
    zero = layer.unsigned_zero_point()
    if scale.ndim < 2:  # per-tensor / per-channel: one value per row
        scale, zero = scale.expand(n).reshape(n, 1), zero.expand(n).reshape(n, 1)
    # Codes narrower than 4 bits are shifted by d so that their zero-point sits at the
    # kernel's 8: w = s * (c - z) = s * ((c + d) - 8) + s * (8 - z - d), offset exactly 0.
    shift = (8 - zero).clamp(0, 16 - (1 << layer.scheme.bits))
    codes = layer.unsigned_codes().to(torch.int32)  # (N, K)
    codes += shift.repeat_interleave(k // shift.shape[1], dim=1)  # now in [0, 16)
    offset = scale * (8 - zero - shift).float()
    reps = (k // g) // scale.shape[1]  # kernel groups per stored scale
    scales_zeros = torch.stack([scale, offset], dim=-1).repeat_interleave(reps, dim=1)
    scales_zeros = scales_zeros.transpose(0, 1).contiguous()  # (K/g, N, 2)
    packed = torch._convert_weight_to_int4pack_for_cpu(codes, 1)
    return packed, g, scales_zeros.to(dtype), _bias(layer, dtype)


def _int4_run(layer, state, x):
    packed, g, scales_zeros, bias = state
    y = torch._weight_int4pack_mm_for_cpu(x, packed, g, scales_zeros)
    return y if bias is None else y.add_(bias)


# --- int8pack: torch._weight_int8pack_mm -----------------------------------------------------


def _int8_accepts(layer) -> str | None:
    if not hasattr(torch.ops.aten, "_weight_int8pack_mm"):
        return "this torch has no _weight_int8pack_mm"
    return _uniform_per_row(layer)


def _int8_prepare(layer, dtype):
    s = layer.scheme
    scale, zero = _row_scale_zero(layer)
    codes = layer.unsigned_codes().to(torch.int32)
    correction = None
    if s.bits <= 7 or s.symmetric:  # c - z fits int8
        weight = codes - zero[:, None]
    else:  # 8-bit asymmetric: c - 128, plus sum(x) * s * (128 - z)
        weight = codes - 128
        correction = (scale * (128 - zero)).to(dtype)
    return weight.to(torch.int8).contiguous(), scale.to(dtype), correction, _bias(layer, dtype)


def _int8_run(layer, state, x):
    weight, scale, correction, bias = state
    y = torch._weight_int8pack_mm(x, weight, scale)
    if correction is not None:
        y = y + x.sum(-1, keepdim=True) * correction
    return y if bias is None else y.add_(bias)


# --- fbgemm / x86 dynamic int8 (W8A8) -------------------------------------------------------


def _fbgemm_accepts(layer) -> str | None:
    if torch.backends.quantized.engine not in ("x86", "fbgemm"):
        return f"the quantized engine is {torch.backends.quantized.engine!r}, not x86/fbgemm"
    return _on_cpu(layer)


def _fbgemm_weight(layer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int8 codes, float64 scales, int64 zero-points, one scale per output row. Per-row
    uniform codes are used as they are; other schemes (per-group, codebooks) are the
    dequantized weight re-quantized to symmetric int8 per row."""
    if _uniform_per_row(layer) is None:
        scale, zero = _row_scale_zero(layer)
        codes = (layer.unsigned_codes().to(torch.int32) - 128).to(torch.int8)  # u - 128
        return codes, scale.double(), (zero - 128).long()
    weight = layer.dequantized_weight(torch.float32)
    scale = (weight.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
    codes = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scale.double(), torch.zeros_like(scale, dtype=torch.long)


def _fbgemm_prepare(layer, dtype):
    codes, scale, zero = _fbgemm_weight(layer)
    with warnings.catch_warnings():  # quantized dtypes are deprecated upstream, still the API
        warnings.simplefilter("ignore")
        qweight = torch._make_per_channel_quantized_tensor(codes, scale, zero, 0)
        return torch.ops.quantized.linear_prepack(qweight, _bias(layer, torch.float32))


def _fbgemm_run(layer, state, x):
    return torch.ops.quantized.linear_dynamic(x, state, True)


# --- registry ------------------------------------------------------------------------------

# Priorities come from benchmarks/weight_only_layers.py (see the module docstring).
_LOW_BITS = (1, 2, 3, 4)
SMALL_LAYER = 2 * 2**20  # weight elements: below this a float32 weight stays in cache
register_kernel(
    KernelPath(
        "reference",
        lambda layer: None,
        lambda layer, dtype: None,
        _reference_run,
        compute_dtype=torch.float32,
    )
)
register_kernel(
    KernelPath(
        "dense",
        lambda layer: None,
        _dense_prepare,
        _dense_run,
        compute_dtype=torch.float32,
        rtol=1e-6,
        cases=(Case(numel=(0, SMALL_LAYER), priority=50),),
    )
)
register_kernel(
    KernelPath(
        "dense_bf16",
        lambda layer: None,
        _dense_prepare,
        _dense_run,
        compute_dtype=torch.bfloat16,
        rtol=1e-2,
        cases=(Case(tokens=(16, None), needs=("avx512_bf16",), priority=30),),
    )
)
register_kernel(
    KernelPath(
        "int4pack",
        _int4_accepts,
        _int4_prepare,
        _int4_run,
        compute_dtype=torch.bfloat16,
        rtol=1e-2,
        shapes=Shapes(in_multiple=32, out_multiple=16),
        cases=(
            Case(bits=_LOW_BITS, tokens=(1, 16), needs=("avx512_bf16",), priority=10),
            Case(bits=_LOW_BITS, tokens=(1, 32), priority=60),
        ),
    )
)
register_kernel(
    KernelPath(
        "int8pack",
        _int8_accepts,
        _int8_prepare,
        _int8_run,
        compute_dtype=torch.bfloat16,
        rtol=1e-2,
        shapes=Shapes(in_multiple=16),
        cases=(
            Case(tokens=(1, 16), needs=("avx512_bf16",), priority=25),
            Case(tokens=(1, 32), priority=70),
        ),
    )
)
register_kernel(
    KernelPath(
        "fbgemm",
        _fbgemm_accepts,
        _fbgemm_prepare,
        _fbgemm_run,
        compute_dtype=torch.float32,
        rtol=4e-2,
        quantizes_activations=True,
        cases=(Case(priority=20),),
    )
)
