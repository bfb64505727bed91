"""The shape sweep behind tests/nn/test_kernel_shapes.py.

Every kernel path of the weight-only layers (:mod:`quantlens.nn.kernels`) and of
:class:`DynamicLinear` runs input widths 1-130 at 1-17 tokens (and a 3-D input), for every
scheme below: a path either declines the layer (forcing it raises a ``QuantlensError``) or
returns the right numbers. ``helpers.in_child`` runs one sweep in a forked process, so that a
kernel that crashes the process fails the test instead of killing the run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from helpers import random_tensor
from torch import nn

from quantlens import QScheme, quantize_tensor
from quantlens.errors import QuantlensError
from quantlens.nn import QLinear, kernel_paths
from quantlens.nn.dynamic_linear import DynamicLinear, dynamic_kernels
from quantlens.nn.kernels import why_not

WIDTHS = range(1, 131)
TOKENS = 17  # batches 1..17 are the first rows of one (17, K) input


def out_width(k: int) -> int:
    """Output width paired with input width ``k``: 20 (not a multiple of 16) for a third of
    the widths, 48 for the rest, so that every input width that a path takes is run."""
    return 20 if k % 3 == 1 else 48


def _group(k: int, limit: int = 32) -> int:
    return max(g for g in range(1, limit + 1) if k % g == 0)


# One scheme per kernel format the paths tell apart: int8 codes with and without the
# asymmetric correction, sub-byte per-channel codes (shifted in int4pack), per-group codes
# (groups of up to 32 that divide the width), a codebook (re-quantized by fbgemm).
SCHEMES: dict[str, Callable[[int], QScheme]] = {
    "b8-channel-sym": lambda k: QScheme(bits=8, symmetric=True, granularity="per_channel"),
    "b8-channel-asym": lambda k: QScheme(bits=8, symmetric=False, granularity="per_channel"),
    "b3-channel-asym": lambda k: QScheme(bits=3, symmetric=False, granularity="per_channel"),
    "b4-group-asym": lambda k: QScheme(
        bits=4, symmetric=False, granularity="per_group", group_size=_group(k)
    ),
    "nf4-group": lambda k: QScheme(
        bits=4, codebook="nf4", granularity="per_group", group_size=_group(k)
    ),
}


def _linear(k: int, n: int) -> nn.Linear:
    lin = nn.Linear(k, n)
    with torch.no_grad():
        lin.weight.copy_(random_tensor(n, k, seed=k, scale=k**-0.5))
        lin.bias.copy_(random_tensor(n, seed=k + 1, scale=0.1))
    return lin


def _rel(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-12))


_ROWS = torch.cat([torch.arange(m) for m in range(1, TOKENS + 1)])  # rows of x[:1], x[:2], ...
_ENDS = torch.arange(1, TOKENS + 1).cumsum(0)  # where each batch ends in _ROWS


def _check(
    run: Callable[[torch.Tensor], torch.Tensor], ref_fn, k: int, bound: float, label: str
) -> list[str]:
    """Run at 1..17 tokens and on a 3-D bf16 input; compare with ``ref_fn`` (relative L2
    error of each batch, computed in one pass)."""
    x = random_tensor(TOKENS, k, seed=k + 2)  # (17, K)
    ref = ref_fn(x)  # (17, N)
    ys = [run(x[:m]) for m in range(1, TOKENS + 1)]
    if any(y.shape != (m, ref.shape[1]) for m, y in enumerate(ys, 1)):
        return [f"{label}: wrong output shapes {[tuple(y.shape) for y in ys]}"]
    diff = (
        (torch.cat(ys).double() - ref[_ROWS].double()).square().sum(1).cumsum(0)[_ENDS - 1]
    )  # (17,)
    norm = ref[_ROWS].double().square().sum(1).cumsum(0)[_ENDS - 1]
    err = (
        diff.diff(prepend=diff.new_zeros(1)) / norm.diff(prepend=norm.new_zeros(1)).clamp_min(1e-24)
    ).sqrt()
    bad = [
        f"{label} tokens {m}: error {e:.2e} > {bound}"
        for m, e in enumerate(err.tolist(), 1)
        if not e <= bound
    ]
    x3 = x[:15].reshape(3, 5, k).to(torch.bfloat16)
    y3 = run(x3)
    ref3 = ref_fn(x3.float().reshape(15, k)).reshape(3, 5, -1)
    if y3.dtype != torch.bfloat16 or y3.shape != ref3.shape or _rel(y3, ref3) > max(bound, 2e-2):
        bad.append(f"{label} 3-D bf16: error {_rel(y3, ref3):.2e}")
    return bad


# Paths whose op is a plain float matmul on the dequantized weight: the scheme only changes
# the weight's values, so each width runs one scheme (in turn), not all of them.
FLOAT_MATMUL = ("reference", "dense", "dense_bf16")


def sweep_weight_only(path: str) -> list[str]:
    """Failures of weight-only path ``path`` (or ``"auto"``) over every width and scheme."""
    bound = 2e-2 if path == "auto" else max(kernel_paths()[path].rtol, 1e-5)
    bad: list[str] = []
    names = list(SCHEMES)
    for k in WIDTHS:
        fl = _linear(k, out_width(k))
        for name in [names[k % len(names)]] if path in FLOAT_MATMUL else names:
            make = SCHEMES[name]
            layer = QLinear.from_float(fl, quantize_tensor(fl.weight.detach(), make(k)))
            label = f"{path} {name} {k}->{fl.out_features}"
            if path != "auto" and why_not(layer, path):
                layer.kernel = path
                try:
                    layer(torch.zeros(1, k))
                    bad.append(f"{label}: declined ({why_not(layer, path)}) but ran when forced")
                except QuantlensError:
                    pass
                continue
            layer.kernel = path
            weight = layer.dequantized_weight(torch.float32)
            bad += _check(
                layer, lambda x, w=weight, b=layer.bias: F.linear(x, w, b), k, bound, label
            )
    return bad


def sweep_dynamic(path: str) -> list[str]:
    """Failures of DynamicLinear path ``path`` over every width (int8 paths are compared
    with the ``reference`` path on the same codes, float16 paths with float math)."""
    spec = dynamic_kernels()[path]
    bad: list[str] = []
    for k in WIDTHS:
        fl = _linear(k, out_width(k))
        layer = DynamicLinear.from_float(fl, dtype=spec.dtype)
        label = f"{path} {k}->{fl.out_features}"
        reason = spec.why_not(layer, torch.zeros(1, k))
        if reason:
            layer.kernel = path
            try:
                layer(torch.zeros(1, k))
                bad.append(f"{label}: declined ({reason}) but ran when forced")
            except QuantlensError:
                pass
            continue
        if spec.dtype == "int8":
            ref_layer = DynamicLinear.from_float(fl, dtype="int8")
            ref_layer.kernel = "reference"
            ref_fn, bound = ref_layer, 1e-4
        else:
            weight = layer.dequantized_weight()
            ref_fn, bound = (lambda x, w=weight, b=layer.bias: F.linear(x, w, b)), 1e-5
        layer.kernel = path
        bad += _check(layer, ref_fn, k, bound, label)
    return bad
