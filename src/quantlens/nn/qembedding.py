"""QEmbedding: a weight-only quantized ``nn.Embedding`` that dequantizes only the rows it looks
up."""

from __future__ import annotations

import torch
from torch import nn

from quantlens.core.packing import unpack
from quantlens.core.qtensor import QTensor
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError
from quantlens.nn.packed import PackedWeight, implied_zero_point
from quantlens.nn.registry import register_quantized


@register_quantized(nn.Embedding)
class QEmbedding(PackedWeight):
    """An embedding table stored packed (see :mod:`quantlens.nn.packed`).

    ``forward(ids)`` gathers the packed bytes of the requested rows and dequantizes only
    those, so a lookup costs ``O(len(ids) * dim)``, not the whole table. When a row is
    not a whole number of bytes (``dim * bits % 8 != 0``) the unpacked codes are cached
    once (one byte per element) instead.

    Args:
        num_embeddings, embedding_dim: as ``nn.Embedding``.
        scheme: per-row (per-channel axis 0), per-group along the embedding dim (axis -1)
            or per-tensor; uniform or codebook.
        padding_idx: kept for the repr and for ``from_float``; the row is whatever was
            quantized (zeros stay zeros).
        dtype: the output dtype (default float32).

    Example:
        >>> emb = nn.Embedding(1000, 64)
        >>> scheme = ql.QScheme(bits=4, symmetric=False, granularity="per_group", group_size=32)
        >>> q = QEmbedding.from_float(emb, ql.quantize_tensor(emb.weight.detach(), scheme))
        >>> q(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 64])
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        scheme: QScheme,
        padding_idx: int | None = None,
        device=None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = padding_idx
        self.dtype = dtype
        self._init_weight((self.num_embeddings, self.embedding_dim), scheme, device)

    @classmethod
    def unsupported_reason(cls, scheme: QScheme, weight_shape) -> str | None:
        axis = 0 if scheme.axis is None else scheme.axis  # None only per tensor
        if scheme.granularity == "per_channel" and axis % 2 != 0:
            return "an embedding is quantized per row (per_channel axis 0), not per column"
        if scheme.granularity == "per_group" and axis % 2 != 1:
            return "an embedding is grouped along the embedding dim (per_group axis -1)"
        return super().unsupported_reason(scheme, weight_shape)

    @classmethod
    def empty(cls, embedding: nn.Embedding, scheme: QScheme) -> QEmbedding:
        """The structure :meth:`from_float` builds for ``embedding`` and ``scheme``, with
        zero buffers (what a checkpoint's state dict loads into).

        Example:
            >>> QEmbedding.empty(nn.Embedding(100, 64), ql.QScheme(bits=4)).weight_shape
            (100, 64)
        """
        return cls(
            embedding.num_embeddings,
            embedding.embedding_dim,
            scheme=scheme,
            padding_idx=embedding.padding_idx,
        )

    @classmethod
    def from_float(cls, embedding: nn.Embedding, qweight: QTensor) -> QEmbedding:
        """A QEmbedding holding ``qweight`` (``embedding.weight`` quantized)."""
        if not isinstance(embedding, nn.Embedding):
            raise InputError(
                f"QEmbedding.from_float needs an nn.Embedding, got {type(embedding).__name__}"
            )
        if embedding.max_norm is not None:
            raise InputError(
                "nn.Embedding with max_norm renormalizes its weight on lookup; "
                "quantize it only with max_norm=None (skip it otherwise)"
            )
        layer = cls(
            embedding.num_embeddings,
            embedding.embedding_dim,
            scheme=qweight.scheme,
            padding_idx=embedding.padding_idx,
            device=embedding.weight.device,
            dtype=embedding.weight.dtype,
        )
        layer._load_qtensor(qweight)
        return layer

    def to_float(self) -> nn.Embedding:
        """An ``nn.Embedding`` holding the dequantized table, on this layer's device."""
        embedding = nn.utils.skip_init(
            nn.Embedding,
            self.num_embeddings,
            self.embedding_dim,
            padding_idx=self.padding_idx,
            device=self.weight_packed.device,
        )
        with torch.no_grad():
            embedding.weight.copy_(self.dequantized_weight(embedding.weight.dtype))
        return embedding

    @classmethod
    def from_config(cls, config: dict) -> QEmbedding:
        """Rebuild an empty layer from :meth:`config` (for checkpoint loading)."""
        return cls(
            config["num_embeddings"],
            config["embedding_dim"],
            padding_idx=config.get("padding_idx"),
            scheme=QScheme.from_dict(config["scheme"]),
        )

    def config(self) -> dict:
        """What it takes to rebuild this layer empty: JSON-ready."""
        return {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
            "scheme": self.scheme.to_dict(),
        }

    def _row_codes(self, rows: torch.Tensor) -> torch.Tensor:
        """Unsigned codes of ``rows`` (1-D long), shape ``(len(rows), dim)``."""
        bits, dim = self.scheme.bits, self.embedding_dim
        if dim * bits % 8:
            table = self.cached("codes", self.unsigned_codes)
            return table[rows]
        row_bytes = dim * bits // 8  # the packed stream is LSB-first bits, so whole rows are bytes
        index = rows[:, None] * row_bytes + torch.arange(row_bytes, device=rows.device)
        return unpack(self.weight_packed[index].reshape(-1), bits, (rows.numel(), dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dtype not in (torch.int64, torch.int32):
            raise InputError(f"QEmbedding takes int64/int32 indices, got {ids.dtype}")
        rows = ids.reshape(-1).long()
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= self.num_embeddings):
            raise InputError(f"index out of range for an embedding of {self.num_embeddings} rows")
        s = self.scheme
        if rows.numel() == 0:
            return torch.zeros(*ids.shape, self.embedding_dim, dtype=self.dtype, device=ids.device)
        codes = self._row_codes(rows)
        offset = (1 << (s.bits - 1)) if s.signed and s.codebook is None else 0
        data = (codes.to(torch.int16) - offset).to(torch.int8) if offset else codes
        scale = self.scale if s.granularity == "per_tensor" else self.scale[rows]
        if self.zero_point is None:
            zero = torch.full_like(scale, implied_zero_point(s), dtype=torch.int32)
        else:
            zero = (self.zero_point if s.granularity == "per_tensor" else self.zero_point[rows]).to(
                torch.int32
            )
        codebook = self.codebook
        if codebook is not None and codebook.ndim == 2:
            codebook = codebook[rows]
        out = QTensor(data, scale.float(), zero, s, codebook).dequantize(torch.float32)
        return out.to(self.dtype).reshape(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}, {super().extra_repr()}"
