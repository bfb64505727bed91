"""Kernel paths: which matmul runs a quantized layer, and when.

One registry (:mod:`.registry`) and one selection rule serve every layer with kernel paths:
the weight-only :class:`~quantlens.nn.QLinear` (paths in :mod:`.weight_only`), the
weight-only :class:`~quantlens.nn.QConv2d` (:mod:`.conv`) and the dynamic
:class:`~quantlens.nn.dynamic_linear.DynamicLinear` (paths in :mod:`.dynamic`, described in
that class's module). Below: the weight-only Linear paths.

Every path is a :class:`KernelPath` in the registry. A path says which weight formats it can
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
            (off by default: rounding outlier activations, as
            in BERT, costs accuracy that weight-only keeps).
==========  ====================================================  =========  ========

Automatic choice: the cases each path registers (:mod:`.weight_only`), read from the
speed-ups over float32 that benchmarks/weight_only_layers.py measures in one run (the
``weight_only_layers*`` sections of docs/performance.md: the rows, and ``speedup_ranges``
per batch and path, with the machine and date of each run).

CPUs with avx512_bf16 (native bf16 matmuls):

- fewer than 16 tokens: uniform codes of at most 4 bits -> ``int4pack`` (priority 10),
  per-row uniform codes -> ``int8pack`` (25), whatever the layer's size: reading half a
  byte (or a byte) per weight beats any float matmul when each weight is used once or a
  few times;
- 16 tokens or more, any float input -> ``dense_bf16`` (30): once the weight is reused
  across tokens the native bf16 matmul is the fastest, and bf16 compute keeps the
  accuracy within the path's tolerance.

Other CPUs (bf16 matmuls are emulated, so ``dense_bf16`` is never picked):

- layers under 2M weights (:data:`SMALL_LAYER`: their float32 weight stays in cache,
  where a float32 matmul beats the packed kernels) -> ``dense`` (priority 50);
- otherwise, fewer than 32 tokens: uniform codes of at most 4 bits -> ``int4pack`` (60),
  per-row uniform codes -> ``int8pack`` (70);
- everything else (per-group 5- to 8-bit codes, codebooks, 32 tokens or more) ->
  ``dense`` (float32 is the fastest matmul there).

Everywhere, layers with ``allow_activation_quant=True``: any scheme, batch and dtype ->
``fbgemm`` (priority 20: on large layers the int8 GEMM is the fastest path at every
batch measured), unless ``int4pack`` serves the batch (fewer than 16 tokens on avx512_bf16
CPUs, where it is faster still).

How to add a path: see :mod:`.registry`.
"""

from quantlens.nn.kernels import conv, dynamic  # noqa: F401  (register their paths)
from quantlens.nn.kernels.registry import (
    _REGISTRY,
    FLOAT_DTYPES,
    Case,
    KernelKey,
    KernelLayer,
    KernelPath,
    cpu_features,
    force_kernel,
    get_kernel,
    kernel_paths,
    register_kernel,
    run,
    select,
    why_not,
)
from quantlens.nn.kernels.weight_only import FALLBACK, INT4_GROUPS, SMALL_LAYER
from quantlens.nn.shapes import Shapes

_PATHS = _REGISTRY["weight_only"]  # the weight-only paths by name (the registry's own dict)

__all__ = [
    "FALLBACK",
    "FLOAT_DTYPES",
    "INT4_GROUPS",
    "SMALL_LAYER",
    "Case",
    "KernelKey",
    "KernelLayer",
    "KernelPath",
    "Shapes",
    "cpu_features",
    "force_kernel",
    "get_kernel",
    "kernel_paths",
    "register_kernel",
    "run",
    "select",
    "why_not",
]
