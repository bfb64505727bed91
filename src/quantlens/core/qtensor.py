"""QTensor and quantize_tensor: ``q = clip(round(x / s) + z, qmin, qmax)``,
``x_hat = s * (q - z)``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from quantlens.core import codebooks
from quantlens.core.layout import block_minmax, from_blocks, qparam_shape, to_blocks
from quantlens.core.qparams import MIN_SCALE, compute_qparams
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError

if TYPE_CHECKING:
    from quantlens.core.observers import Observer


@dataclass
class QTensor:
    """A quantized tensor: integer levels plus what it takes to map them back to floats.

    Attributes:
        data: integer levels in the original shape (int8 if the scheme is signed, else
            uint8; codebook indices for non-linear schemes).
        scale: float32 scales, shaped as described in :mod:`quantlens.core.layout`.
        zero_point: int32 zero-points, same shape as ``scale``.
        scheme: the :class:`QScheme` used.
        codebook: for non-linear schemes, the levels in ``[-1, 1]`` that ``data`` indexes:
            ``(levels,)``, or ``(n_scales, levels)`` for per-scale k-means codebooks.
    """

    data: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    scheme: QScheme
    codebook: torch.Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float tensor these levels stand for: ``s * (q - z)`` (or ``s * codebook[q]``).

        Args:
            dtype: a floating-point dtype. Values beyond its range saturate to its largest
                finite value (``s * (q - z)`` of a float32 range near ±3.4e38, or a float16
                range near ±65504, would otherwise round to ±inf).

        Returns:
            A tensor of ``dtype`` in the shape of ``data``.

        Raises:
            InputError: ``dtype`` is not a floating-point dtype.

        Example:
            >>> x = torch.tensor([1.5, -2.3])
            >>> quantize_tensor(x, QScheme(bits=8), scale=torch.tensor(0.2)).dequantize()
            tensor([ 1.6000, -2.4000])
        """
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise InputError(
                f"dequantize returns floats: pass a floating-point dtype such as "
                f"torch.float32, not {dtype}"
            )
        work = dtype if not _may_overflow(self, dtype) else torch.float32
        q = to_blocks(self.data, self.scheme)
        if self.codebook is not None:
            x = codebooks.lookup(q, self.codebook.to(work)).mul_(self.scale.to(work).unsqueeze(-1))
        else:
            x = dequantize_blocks(q, self.scale.to(work), self.zero_point, work)
        if work is not dtype or _may_overflow(self, torch.float32):
            info = torch.finfo(dtype)
            x = x.clamp_(info.min, info.max).to(dtype)
        return from_blocks(x, self.scheme, self.data.shape)

    @property
    def nbytes(self) -> int:
        """Storage in bytes when packed: ``ceil(numel * bits / 8)`` plus the parameters
        (scales, zero-points unless symmetric, codebook)."""
        total = math.ceil(self.data.numel() * self.scheme.bits / 8)
        total += self.scale.numel() * self.scale.element_size()
        if not self.scheme.symmetric and self.codebook is None:
            total += self.zero_point.numel() * self.zero_point.element_size()
        if self.codebook is not None:
            total += self.codebook.numel() * self.codebook.element_size()
        return total


def _may_overflow(qt: QTensor, dtype: torch.dtype) -> bool:
    """Whether ``s * (q - z)`` can leave ``dtype``'s finite range (``|q - z| <= 2^bits - 1``;
    a codebook level is at most 1 in magnitude)."""
    if not qt.scale.numel():
        return False
    span = 1 if qt.codebook is not None else qt.scheme.levels - 1
    return float(qt.scale.detach().abs().max()) * span * 1.001 >= torch.finfo(dtype).max


def integer_dtype(scheme: QScheme) -> torch.dtype:
    """The smallest torch integer dtype that holds the scheme's levels."""
    return torch.int8 if scheme.signed and scheme.codebook is None else torch.uint8


FLOAT32_MAX = torch.finfo(torch.float32).max


def check_float(x: torch.Tensor, what: str = "tensor") -> None:
    """Raise :class:`InputError` unless ``x`` is a floating-point tensor with data (not on
    the ``meta`` device)."""
    if not isinstance(x, torch.Tensor):
        raise InputError(
            f"expected a torch.Tensor as the {what}, got {type(x).__name__}; "
            "convert it with torch.as_tensor(..., dtype=torch.float32)"
        )
    if not x.is_floating_point():
        raise InputError(
            f"expected a floating-point {what}, got dtype {x.dtype}; convert it with .float()"
        )
    if x.is_meta:
        raise InputError(
            f"the {what} is on the meta device and holds no values; "
            "load real weights (e.g. model.to_empty(device='cpu') and load_state_dict) first"
        )


def check_scheme_type(scheme) -> None:
    """Raise :class:`InputError` unless ``scheme`` is a :class:`QScheme`."""
    if not isinstance(scheme, QScheme):
        raise InputError(
            f"scheme must be a QScheme, got {type(scheme).__name__}; "
            "build one with QScheme(bits=...) or QScheme.from_dict(d)"
        )


def check_float32_range(
    lo: torch.Tensor, hi: torch.Tensor, dtype: torch.dtype, what: str = "tensor"
) -> None:
    """Raise :class:`InputError` if a float64 tensor's extremes ``lo``/``hi`` lie beyond
    float32's range (quantlens computes scales in float32)."""
    if dtype == torch.float64 and (float(lo.min()) < -FLOAT32_MAX or float(hi.max()) > FLOAT32_MAX):
        raise InputError(
            f"the {what} holds values beyond float32's range (±{FLOAT32_MAX:.4g}); "
            "rescale it before quantizing"
        )


def check_finite_extremes(lo: torch.Tensor, hi: torch.Tensor, what: str = "tensor") -> None:
    """Raise :class:`InputError` if a NaN or Inf shows in the (NaN-propagating) extremes of a
    tensor: checking them costs nothing, unlike a full ``isfinite`` pass."""
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise InputError(f"the {what} holds NaN/Inf value(s); quantization needs finite values")


def check_finite_float(x: torch.Tensor, what: str = "tensor") -> None:
    """Raise :class:`InputError` unless ``x`` is a finite floating-point tensor."""
    check_float(x, what)
    if x.numel():
        lo, hi = x.amin(), x.amax()
        check_finite_extremes(lo, hi, what=what)
        check_float32_range(lo, hi, x.dtype, what=what)


def check_zero_point(zero_point: torch.Tensor, scheme: QScheme) -> torch.Tensor:
    """``zero_point`` as int32, after checking it holds whole numbers inside ``[qmin, qmax]``
    (a zero-point outside the grid would clip every value to one end)."""
    zero_point = torch.as_tensor(zero_point)
    if zero_point.is_floating_point() and not torch.equal(zero_point, zero_point.round()):
        raise InputError(
            "zero_point must hold whole numbers (it is an integer level); round it first"
        )
    if zero_point.numel() and (zero_point.min() < scheme.qmin or zero_point.max() > scheme.qmax):
        raise InputError(
            f"zero_point must lie in [{scheme.qmin}, {scheme.qmax}] for {scheme.describe()}, "
            f"got values from {zero_point.min().item():g} to {zero_point.max().item():g}"
        )
    return zero_point.to(torch.int32)


def _check_qparam(t: torch.Tensor, expected: tuple[int, ...], name: str) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.numel() == 1 and expected == ():
        return t.reshape(())
    if tuple(t.shape) != expected:
        raise InputError(
            f"{name} has shape {tuple(t.shape)} but this scheme and tensor need {expected}; "
            "compute it with compute_qparams over the same granularity"
        )
    return t


def _check_scale(scale: torch.Tensor) -> torch.Tensor:
    if not (torch.isfinite(scale).all() and (scale > 0).all()):
        raise InputError(
            "scale must be positive and finite everywhere; compute it with compute_qparams"
        )
    return scale


def quantize_tensor(
    x: torch.Tensor,
    scheme: QScheme,
    *,
    scale: torch.Tensor | None = None,
    zero_point: torch.Tensor | None = None,
    observer: Observer | None = None,
) -> QTensor:
    """Quantize ``x`` under ``scheme``.

    The range comes from, in order of precedence: the given ``scale`` (and ``zero_point``,
    default 0 / mid-range), the given ``observer`` (updated with ``x``), or ``x``'s own
    min/max per scale. For codebook schemes the scale is the absmax of that range (values
    beyond it take the outermost level).

    Args:
        x: float tensor of any shape.
        scheme: how to quantize.
        scale, zero_point: fixed quantization parameters, shaped like
            ``layout.qparam_shape(x.shape, scheme)``.
        observer: a range estimator from :mod:`quantlens.core.observers`.

    Returns:
        A :class:`QTensor`.

    Example:
        >>> x = torch.tensor([1.5, -2.3])
        >>> qt = quantize_tensor(x, QScheme(bits=8), scale=torch.tensor(0.2))
        >>> qt.data.tolist()
        [8, -12]
    """
    check_float(x)
    check_scheme_type(scheme)
    if x.numel() == 0:
        raise InputError(
            f"cannot quantize an empty tensor (shape {tuple(x.shape)}): there is no range to map"
        )
    if zero_point is not None and scale is None:
        raise InputError(
            "zero_point was given without scale; pass both, or neither to use the tensor's range"
        )
    if x.dtype == torch.float64:  # beyond float32's range it would turn into inf below
        check_finite_float(x)
    blocks = to_blocks(x.detach().float(), scheme)  # integer codes carry no gradient
    expected = qparam_shape(x.shape, scheme)
    if scheme.codebook is not None:
        check_finite_float(x)
        if scale is not None:
            scale = _check_scale(_check_qparam(scale, expected, "scale").float())
        elif observer is not None:  # the observer's (clipping) range sets the absmax scale
            observer.update(x)
            observer.check_scheme(scheme)
            lo, hi = observer.range(scheme)
            scale = _check_qparam(
                torch.maximum(-lo, hi).clamp(min=MIN_SCALE), expected, "observer scale"
            )
        q, scale, levels = codebooks.quantize_blocks(blocks, scheme, scale=scale)
        scale = scale.reshape(expected)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
        return QTensor(from_blocks(q, scheme, x.shape), scale, zero_point, scheme, levels)
    if scale is not None:
        check_finite_float(x)
        scale = _check_scale(_check_qparam(scale, expected, "scale").float())
        if zero_point is None:
            mid = 0 if scheme.signed or not scheme.symmetric else (scheme.qmax + 1) // 2
            zero_point = torch.full_like(scale, mid, dtype=torch.int32)
        zero_point = check_zero_point(_check_qparam(zero_point, expected, "zero_point"), scheme)
    elif observer is not None:
        observer.update(x)
        scale, zero_point = observer.qparams(scheme)
        scale = _check_qparam(scale, expected, "observer scale")
        zero_point = _check_qparam(zero_point, expected, "observer zero_point")
    else:
        lo, hi = block_minmax(blocks)  # NaN/Inf propagate into the extremes: no extra pass
        check_finite_extremes(lo, hi)
        check_float32_range(lo, hi, x.dtype)
        scale, zero_point = compute_qparams(lo.reshape(expected), hi.reshape(expected), scheme)
    q = quantize_blocks(blocks, scale, zero_point, scheme)
    return QTensor(from_blocks(q, scheme, x.shape), scale, zero_point, scheme)


# Elements per chunk of the CPU quantize loop (2 MB of float32). Working through a reused,
# cache-sized buffer avoids allocating (and page-faulting) a float temporary the size of the
# tensor and keeps the in-place passes in cache. Per-group 4-bit quantization of a 4096x4096
# matrix takes 0.71x a torch.round pass over it (benchmarks/core.py, 2 threads, AVX-512
# EPYC); one region per pass, the tensor at a time, took 1.61x in an interleaved run there.
CHUNK_ELEMENTS = 1 << 19


def _rows(
    blocks: torch.Tensor, out: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, dtype
):
    """``blocks`` and ``out`` as ``(rows, per_row)`` views with ``(rows, 1)`` parameters
    (or flat, with scalar parameters, when there is one scale), plus the rows per chunk
    (all of them off the CPU)."""
    if scale.numel() == 1:
        src, dst, per_row = blocks.reshape(-1), out.view(-1), 1
        s, z = scale.reshape(()), zero_point.reshape(()).to(dtype)
    else:
        src, dst = blocks.reshape(-1, blocks.shape[-1]), out.view(-1, blocks.shape[-1])
        s, z = scale.reshape(-1, 1), zero_point.reshape(-1, 1).to(dtype)
        per_row = src.shape[1]
    chunked = src.device.type == "cpu"
    step = max(1, CHUNK_ELEMENTS // max(per_row, 1)) if chunked else src.shape[0]
    return src, dst, s, z, per_row, step


def dequantize_blocks(
    q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, dtype
) -> torch.Tensor:
    """``s * (q - z)`` on a blocked integer tensor: one cast, then in place (the shift is
    skipped when every zero-point is 0). Not chunked: the output allocation dominates."""
    x = q.to(dtype)
    if bool(zero_point.any()):
        x.sub_(zero_point.unsqueeze(-1).to(dtype))
    return x.mul_(scale.unsqueeze(-1))


def quantize_blocks(
    blocks: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, scheme: QScheme
) -> torch.Tensor:
    """The affine map on a blocked tensor: ``clip(round(x / s) + z, qmin, qmax)`` as integers.

    Per chunk of rows: the division into a reused float buffer, then in-place rounding,
    shift (skipped when every zero-point is 0) and clip, then the cast into the output.
    The result is identical to the unchunked formula.
    """
    out = torch.empty(blocks.shape, dtype=integer_dtype(scheme), device=blocks.device)
    shift = bool(zero_point.any())
    src, dst, s, z, per_row, step = _rows(blocks, out, scale, zero_point, blocks.dtype)
    n = src.shape[0]
    buf = torch.empty(min(step, n) * per_row, dtype=blocks.dtype, device=blocks.device)
    for i in range(0, n, step):
        x = src[i : i + step]
        q = buf[: x.numel()].view(x.shape)
        sc, zp = (s, z) if s.ndim == 0 else (s[i : i + step], z[i : i + step])
        torch.div(x, sc, out=q).round_()
        if shift:
            q.add_(zp)
        dst[i : i + step].copy_(q.clamp_(scheme.qmin, scheme.qmax))
    return out
