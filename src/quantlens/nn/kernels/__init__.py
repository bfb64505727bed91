"""Kernel paths: which matmul runs a quantized layer, and when.

One registry (:mod:`.registry`) and one selection rule serve every layer with kernel paths:
the weight-only :class:`~quantlens.nn.QLinear` (paths in :mod:`.weight_only`) and the dynamic
:class:`~quantlens.nn.dynamic_linear.DynamicLinear` (paths in :mod:`.dynamic`, described in
that class's module). Below: the weight-only paths.

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

How to add a path: see :mod:`.registry`.
"""

from quantlens.nn.kernels import dynamic  # noqa: F401  (registers its paths)
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
