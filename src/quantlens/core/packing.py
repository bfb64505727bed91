"""Bit packing: ``bits``-wide integer codes laid end to end in a uint8 stream.

Code ``i`` occupies stream bits ``[bits*i, bits*(i+1))``, least significant first, so the
packed size is exactly ``ceil(numel * bits / 8)`` bytes for every width from 1 to 8.
Widths that divide 8 (1, 2, 4) pack within single bytes; the others (3, 5, 6, 7) pack
eight codes into ``bits`` bytes through a 64-bit word. Both are vectorised.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from quantlens.errors import InputError

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


_LITTLE_ENDIAN = sys.byteorder == "little"


def _word_dtype(bits: int) -> torch.dtype:
    """Integer type holding eight ``bits``-wide codes (24 bits for 3-bit fit an int32)."""
    return torch.int32 if 8 * bits < 32 else torch.int64


def _pad_to(flat: torch.Tensor, multiple: int) -> torch.Tensor:
    """``flat`` padded with zeros to a multiple of ``multiple`` (no copy when it already is)."""
    extra = -flat.numel() % multiple
    return F.pad(flat, (0, extra)) if extra else flat.contiguous()


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes that ``numel`` codes of ``bits`` bits take when packed."""
    return math.ceil(numel * bits / 8)


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise InputError(f"bits must be an integer from 1 to 8, got {bits!r}")


def pack(q: torch.Tensor, bits: int, *, signed: bool = False) -> torch.Tensor:
    """Pack integer codes into a flat uint8 tensor of ``ceil(q.numel() * bits / 8)`` bytes.

    Args:
        q: integer tensor of any shape, values in ``[0, 2^bits - 1]`` (or, with
            ``signed=True``, in ``[-2^(bits-1), 2^(bits-1) - 1]``).
        bits: code width, 1 to 8.
        signed: store two's-complement-free offset codes (``q + 2^(bits-1)``).

    Returns:
        1-D uint8 tensor.

    Example:
        >>> pack(torch.tensor([1, 2, 3, 0], dtype=torch.uint8), bits=2).tolist()
        [57]
    """
    _check_bits(bits)
    if not isinstance(q, torch.Tensor):
        raise InputError(
            f"pack needs an integer torch.Tensor, got {type(q).__name__}; "
            "convert it with torch.as_tensor(..., dtype=torch.uint8)"
        )
    if q.is_meta:
        raise InputError("pack got a meta tensor, which holds no values; pack real codes")
    if q.dtype not in _INT_DTYPES:
        raise InputError(f"pack needs an integer tensor, got dtype {q.dtype}; quantize it first")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if q.numel():
        qmin, qmax = q.amin(), q.amax()  # two reductions beat aminmax on CPU
        if qmin < lo or qmax > hi:
            raise InputError(
                f"values [{int(qmin)}, {int(qmax)}] do not fit {bits} bits "
                f"({'signed' if signed else 'unsigned'} range [{lo}, {hi}])"
                + ("; pass signed=True for signed codes" if not signed and qmin < 0 else "")
            )
    flat = q.reshape(-1)
    if signed:
        flat = flat.to(torch.int16) + (1 << (bits - 1))
    nbytes = packed_nbytes(flat.numel(), bits)
    if 8 % bits == 0:
        per_byte = 8 // bits
        codes = _pad_to(flat.to(torch.uint8), per_byte).view(-1, per_byte)
        out = codes[:, 0].clone()
        for i in range(1, per_byte):
            out |= codes[:, i] << (bits * i)
        return out[:nbytes]
    wide = _word_dtype(bits)
    codes = _pad_to(flat.to(wide), 8).view(-1, 8)
    word = torch.empty(codes.shape[0], dtype=wide, device=codes.device).copy_(
        codes[:, 0]
    )  # unit stride
    for i in range(1, 8):
        word |= codes[:, i] << (bits * i)
    if _LITTLE_ENDIAN:  # the word's low ``bits`` bytes are the stream, in order
        out = word.view(torch.uint8).view(word.numel(), word.element_size())[:, :bits]
    else:
        out = torch.stack([(word >> (8 * j)) & 0xFF for j in range(bits)], dim=1).to(torch.uint8)
    return out.reshape(-1)[:nbytes]


def _check_shape(shape) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints, or an InputError saying what is wrong."""
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if (
        dims is None
        or isinstance(shape, (str, bytes))
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims)
    ):
        raise InputError(
            f"shape must be a sequence of non-negative integers (like q.shape), got {shape!r:.80}"
        )
    return dims


def unpack(
    packed: torch.Tensor, bits: int, shape: Sequence[int], *, signed: bool = False
) -> torch.Tensor:
    """Inverse of :func:`pack`: the codes, reshaped to ``shape``.

    Returns a uint8 tensor (int8 with ``signed=True``).
    """
    _check_bits(bits)
    if not isinstance(packed, torch.Tensor):
        raise InputError(
            f"unpack needs the uint8 tensor pack() returned, got {type(packed).__name__}"
        )
    if packed.is_meta:
        raise InputError(
            "unpack got a meta tensor, which holds no values; unpack real packed bytes"
        )
    shape = _check_shape(shape)
    if packed.dtype != torch.uint8:
        raise InputError(f"unpack needs the uint8 tensor pack() returned, got dtype {packed.dtype}")
    numel = math.prod(shape)
    if packed.numel() != packed_nbytes(numel, bits):
        raise InputError(
            f"{packed.numel()} packed bytes cannot hold shape {tuple(shape)} at {bits} bits "
            f"(needs {packed_nbytes(numel, bits)})"
        )
    flat = packed.reshape(-1)
    mask = (1 << bits) - 1
    if 8 % bits == 0:
        shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=flat.device)
        codes = (flat[:, None] >> shifts).bitwise_and_(mask)  # (bytes, 8 // bits), one pass
    else:
        wide = _word_dtype(bits)
        chunk = _pad_to(flat, bits).view(-1, bits)
        if _LITTLE_ENDIAN:  # lay each group of ``bits`` bytes into the low bytes of a word
            size = torch.empty((), dtype=wide).element_size()
            raw = torch.zeros(chunk.shape[0], size, dtype=torch.uint8, device=flat.device)
            raw[:, :bits] = chunk
            word = raw.view(wide).reshape(-1)
        else:
            chunk = chunk.to(wide)
            word = chunk[:, 0].clone()
            for j in range(1, bits):
                word |= chunk[:, j] << (8 * j)
        shifts = torch.arange(0, 8 * bits, bits, dtype=wide, device=flat.device)
        codes = (word[:, None] >> shifts).bitwise_and_(mask).to(torch.uint8)  # (words, 8)
    codes = codes.reshape(-1)[:numel].reshape(shape)
    if signed:
        return (codes.to(torch.int16) - (1 << (bits - 1))).to(torch.int8)
    return codes
