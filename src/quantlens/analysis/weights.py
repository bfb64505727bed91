"""Per-layer weight inspection of a float or quantized model: statistics of the (dequantized)
weights, the bit width and scheme they are stored in, and the bytes each layer takes.

Example:
    >>> for row in inspect_weights(ql.load("out/")): print(row.name, row.bits, row.bytes)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from quantlens.analysis.modules import dequantized_weight, is_layer
from quantlens.eval.size import memory_bytes

__all__ = ["WeightStats", "format_weights", "inspect_weights", "weight_stats"]


@dataclass
class WeightStats:
    """One layer's weight.

    Attributes:
        name, kind: module name and class.
        shape: weight shape.
        bits: storage bits per weight (32 for float32, 8 for int8, the scheme's width for
            packed layers).
        scheme: how it is quantized (``"float32"``, ``"int8 per_channel"``, a QScheme description).
        bytes: bytes the layer holds (weights, scales, zero-points, bias).
        min, max, mean, std: of the dequantized weight.
        outlier_ratio: ``max|w| / p99.9(|w|)``.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    bits: int
    scheme: str
    bytes: int
    min: float
    max: float
    mean: float
    std: float
    outlier_ratio: float

    def to_dict(self) -> dict:
        return asdict(self)


def storage(module: nn.Module, weight: torch.Tensor) -> tuple[int, str]:
    """``(bits per weight, scheme description)`` of how ``module`` stores ``weight``."""
    scheme = getattr(module, "scheme", None)
    if scheme is not None and hasattr(scheme, "bits"):
        return int(scheme.bits), scheme.describe() if hasattr(scheme, "describe") else str(scheme)
    raw = getattr(module, "weight", None)
    if callable(raw) and not isinstance(raw, torch.Tensor):
        try:
            raw = raw()
        except (RuntimeError, TypeError):
            raw = None
    if isinstance(raw, torch.Tensor) and raw.is_quantized:
        per = (
            "per_channel"
            if raw.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
            else "per_tensor"
        )
        return raw.element_size() * 8, f"{str(raw.dtype).removeprefix('torch.')} {per}"
    if getattr(module, "weight_fake_quant", None) is not None:
        fq = module.weight_fake_quant
        levels = getattr(fq, "quant_max", 255) - getattr(fq, "quant_min", 0) + 1
        return max(1, math.ceil(math.log2(levels))), "fake-quantized"
    dtype = raw.dtype if isinstance(raw, torch.Tensor) else weight.dtype
    return torch.finfo(dtype).bits if dtype.is_floating_point else dtype.itemsize * 8, str(
        dtype
    ).removeprefix("torch.")


def inspect_weights(model: nn.Module) -> list[WeightStats]:
    """Weight statistics, storage bits and bytes of every layer with a weight.

    Args:
        model: a float model, a quantized one (``ql.quantize`` / ``ql.load``), or a QAT model.

    Returns:
        One :class:`WeightStats` per layer, in module order.
    """
    out = []
    for name, module in model.named_modules():
        if not name or not is_layer(module):
            continue
        w = dequantized_weight(module)
        if w is None or w.numel() == 0:
            continue
        bits, scheme = storage(module, w)
        out.append(
            weight_stats(name, type(module).__name__, w, bits, scheme, memory_bytes(module)[0])
        )
    return out


def weight_stats(
    name: str, kind: str, w: torch.Tensor, bits: int, scheme: str, nbytes: int
) -> WeightStats:
    """The :class:`WeightStats` of one layer's (dequantized) weight ``w``."""
    flat = w.reshape(-1).double()
    absw = flat.abs()
    sample = absw if absw.numel() <= 1_000_000 else absw[torch.randperm(absw.numel())[:1_000_000]]
    p999 = float(torch.quantile(sample, 0.999))
    extreme = float(absw.max())
    ratio = extreme / p999 if p999 > 0 else (1.0 if extreme == 0 else math.inf)
    return WeightStats(
        name,
        kind,
        tuple(w.shape),
        bits,
        scheme,
        nbytes,
        float(flat.min()),
        float(flat.max()),
        float(flat.mean()),
        float(flat.std()) if flat.numel() > 1 else 0.0,
        ratio,
    )


def format_weights(rows: list[WeightStats]) -> str:
    """A plain-text table of :func:`inspect_weights` rows with a total."""
    header = (
        f"{'layer':<40} {'kind':<14} {'shape':<14} {'bits':>4} {'KB':>9} {'min':>8} {'max':>8} "
        f"{'std':>8} {'tail':>5}  scheme"
    )
    lines = [header]
    for r in rows:
        shape = "x".join(map(str, r.shape))
        lines.append(
            f"{r.name[:40]:<40} {r.kind[:14]:<14} {shape[:14]:<14} {r.bits:>4} "
            f"{r.bytes / 1024:>9.1f} {r.min:>8.3g} {r.max:>8.3g} {r.std:>8.3g} "
            f"{r.outlier_ratio:>5.1f}  {r.scheme}"
        )
    lines.append(f"{len(rows)} layers, {sum(r.bytes for r in rows) / 1e6:.3f} MB")
    return "\n".join(lines)
