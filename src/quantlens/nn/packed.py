"""PackedWeight: the storage every weight-only layer shares (packed codes + quantization params).

A weight quantized under a :class:`~quantlens.core.scheme.QScheme` is kept as plain-tensor
buffers, so ``state_dict()`` goes straight into safetensors:

==================  =======================================================================
``weight_packed``   uint8, ``ql.pack`` of the integer codes (signed codes stored with the
                    ``+2^(bits-1)`` offset), exactly ``ceil(numel * bits / 8)`` bytes
``scale``           float32, shaped as :func:`quantlens.core.layout.qparam_shape` says
``zero_point``      only for asymmetric uniform schemes: the zero-points in the scheme's
                    integer dtype (int8 when signed, else uint8); symmetric schemes imply
                    theirs (0, or ``2^(bits-1)`` when unsigned)
``codebook``        only for codebook schemes: the levels in ``[-1, 1]``
==================  =======================================================================

Anything derived from these buffers (unpacked codes, kernel-format weights) lives in a
plain-dict cache that never enters the state dict and is dropped whenever buffers are
loaded or moved (``load_state_dict``, ``.to()``), or by :meth:`PackedWeight.invalidate_cache`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from quantlens.core.layout import qparam_shape
from quantlens.core.packing import pack, packed_nbytes, unpack
from quantlens.core.qtensor import QTensor, integer_dtype
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError, SchemeError


def codebook_shape(scheme: QScheme, channels: int) -> tuple[int, ...]:
    """Shape of the ``codebook`` buffer: ``(levels,)``, or ``(channels, levels)`` for
    per-channel k-means (one codebook per output row)."""
    if scheme.codebook == "log2":
        return ((1 << scheme.bits) - 1,)
    if scheme.codebook == "kmeans" and scheme.granularity == "per_channel":
        return (channels, scheme.levels)
    return (scheme.levels,)


def implied_zero_point(scheme: QScheme) -> int:
    """The zero-point a symmetric (or codebook) scheme implies."""
    if scheme.codebook is not None or scheme.signed:
        return 0
    return (scheme.qmax + 1) // 2


class PackedWeight(nn.Module):
    """Base class of the weight-only layers: holds one packed weight of ``weight_shape``.

    Subclasses call :meth:`_init_weight` in ``__init__`` and :meth:`_load_qtensor` in
    ``from_float``; kernels use :meth:`cached` for anything derived from the buffers.
    """

    scheme: QScheme
    weight_shape: tuple[int, ...]
    weight_packed: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor | None
    codebook: torch.Tensor | None
    _cache: dict[Any, Any]

    def _init_weight(self, weight_shape: tuple[int, ...], scheme: QScheme, device=None) -> None:
        if not isinstance(scheme, QScheme):
            raise InputError(f"scheme must be a ql.QScheme, got {type(scheme).__name__}")
        reason = self.unsupported_reason(scheme, weight_shape)
        if reason:
            raise SchemeError(reason)
        self.scheme = scheme
        self.weight_shape = tuple(int(s) for s in weight_shape)
        numel = math.prod(self.weight_shape)
        qshape = qparam_shape(torch.Size(self.weight_shape), scheme)
        kw = {"device": device}
        self.register_buffer(
            "weight_packed", torch.zeros(packed_nbytes(numel, scheme.bits), dtype=torch.uint8, **kw)
        )
        self.register_buffer("scale", torch.ones(qshape, dtype=torch.float32, **kw))
        if scheme.codebook is None and not scheme.symmetric:
            self.register_buffer(
                "zero_point", torch.zeros(qshape, dtype=integer_dtype(scheme), **kw)
            )
        else:
            self.zero_point = None
        if scheme.codebook is not None:
            shape = codebook_shape(scheme, self.weight_shape[0])
            self.register_buffer("codebook", torch.zeros(shape, dtype=torch.float32, **kw))
        else:
            self.codebook = None
        self._cache: dict[Any, Any] = {}

    @classmethod
    def unsupported_reason(cls, scheme: QScheme, weight_shape: tuple[int, ...]) -> str | None:
        """Why ``scheme`` cannot quantize a weight of ``weight_shape`` here, or None if it can."""
        if scheme.granularity == "per_group" and scheme.group_size is not None and not scheme.pad:
            axis = -1 if scheme.axis is None else scheme.axis  # per_group: QScheme sets it
            length = weight_shape[axis % len(weight_shape)]
            if length % scheme.group_size:
                return (
                    f"group_size {scheme.group_size} does not divide the weight's axis of "
                    f"length {length} (shape {tuple(weight_shape)}); pick a divisor or pad=True"
                )
        return None

    # --- filling from a QTensor -------------------------------------------------------

    def _load_qtensor(self, qweight: QTensor) -> None:
        if not isinstance(qweight, QTensor):
            raise InputError(
                f"expected a QTensor from ql.quantize_tensor, got {type(qweight).__name__}"
            )
        if tuple(qweight.shape) != self.weight_shape:
            raise InputError(
                f"the QTensor has shape {tuple(qweight.shape)} but the layer's weight is "
                f"{self.weight_shape}; quantize the layer's own weight"
            )
        if qweight.scheme != self.scheme:
            raise InputError(
                f"the QTensor's scheme {qweight.scheme} differs from the layer's {self.scheme}"
            )
        signed = bool(self.scheme.signed) and self.scheme.codebook is None
        with torch.no_grad():
            self.weight_packed.copy_(pack(qweight.data, self.scheme.bits, signed=signed))
            self.scale.copy_(qweight.scale.reshape(self.scale.shape))
            if self.zero_point is not None:
                self.zero_point.copy_(qweight.zero_point.reshape(self.zero_point.shape))
            if self.codebook is not None and qweight.codebook is not None:  # same scheme: both
                self.codebook.copy_(qweight.codebook.reshape(self.codebook.shape))
        self.invalidate_cache()

    # --- reading back -----------------------------------------------------------------

    def qweight(self) -> QTensor:
        """The weight as a :class:`QTensor` (codes unpacked; nothing cached)."""
        s = self.scheme
        signed = bool(s.signed) and s.codebook is None
        data = unpack(self.weight_packed, s.bits, self.weight_shape, signed=signed)
        scale = self.scale.float()
        if self.zero_point is not None:
            zp = self.zero_point.to(torch.int32)
        else:
            zp = torch.full_like(scale, implied_zero_point(s), dtype=torch.int32)
        codebook = None if self.codebook is None else self.codebook.float()
        return QTensor(data, scale, zp, s, codebook)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight the codes stand for, computed in float32 and cast to ``dtype``."""
        return self.qweight().dequantize(torch.float32).to(dtype)

    def weight(self) -> torch.Tensor:
        """The dequantized float32 weight, as a method (PyTorch's quantized modules have
        ``weight()`` too).

        Model code reads ``layer.weight`` of the layers it calls: Hugging Face's T5 and
        mT5 feed-forward blocks check ``isinstance(self.wo.weight, torch.Tensor)`` and
        ``self.wo.weight.dtype`` before casting their activations. A method there makes the
        check false (no cast: the layer takes float activations), as it does for int8
        layers; without the attribute the forward would raise AttributeError.

        Returns:
            ``self.dequantized_weight()``, a new tensor of ``weight_shape``.

        Example:
            >>> q = QLinear.from_float(nn.Linear(128, 8), ql.quantize_tensor(w, scheme))
            >>> q.weight().shape
            torch.Size([8, 128])
        """
        return self.dequantized_weight()

    def unsigned_codes(self) -> torch.Tensor:
        """The stored codes as uint8 in ``[0, 2^bits)`` (signed codes keep their offset)."""
        return unpack(self.weight_packed, self.scheme.bits, self.weight_shape)

    def unsigned_zero_point(self) -> torch.Tensor:
        """int32 zero-points matching :meth:`unsigned_codes`: ``w = scale * (code - zp)``
        for uniform schemes."""
        s = self.scheme
        offset = (1 << (s.bits - 1)) if s.signed and s.codebook is None else 0
        if self.zero_point is not None:
            return self.zero_point.to(torch.int32) + offset
        return torch.full_like(self.scale, implied_zero_point(s) + offset, dtype=torch.int32)

    @property
    def packed_nbytes(self) -> int:
        """Bytes of all the quantized-weight buffers (codes, scales, zero-points, codebook)."""
        tensors = [self.weight_packed, self.scale, self.zero_point, self.codebook]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    # --- cache ------------------------------------------------------------------------

    def cached(self, key: Any, build: Callable[[], Any]) -> Any:
        """``build()``'s result, computed once per key until the buffers change."""
        if key not in self._cache:
            with torch.no_grad():
                self._cache[key] = build()
        return self._cache[key]

    def invalidate_cache(self) -> None:
        """Drop every derived weight; the next forward rebuilds what it needs."""
        self._cache.clear()

    def _load_from_state_dict(self, *args, **kwargs):
        self.invalidate_cache()
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, recurse=True):
        self.invalidate_cache()
        before = {name: getattr(self, name) for name in ("scale", "codebook")}
        out = super()._apply(fn, recurse)
        # .half() / .to(bfloat16) cast every float buffer; scales and codebooks stay float32
        # so the dequantized weight does not change with the model's dtype.
        for name, old in before.items():
            new = getattr(self, name)
            if new is not None and new.dtype != torch.float32:
                setattr(self, name, old.to(device=new.device))
        return out

    def extra_repr(self) -> str:
        return f"scheme={self.scheme.describe()}"
