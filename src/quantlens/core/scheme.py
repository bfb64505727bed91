"""QScheme: one way to map floats to integers (bit width, symmetry, granularity, codebook)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

from quantlens.errors import SchemeError

Granularity = Literal["per_tensor", "per_channel", "per_group"]
GRANULARITIES = ("per_tensor", "per_channel", "per_group")
CODEBOOKS = ("nf4", "log2", "kmeans")


@dataclass(frozen=True)
class QScheme:
    """How a tensor is quantized.

    Args:
        bits: integer width, 1 to 8.
        symmetric: zero-point fixed (0 for signed, mid-range for unsigned) and the range
            centred on 0; otherwise affine, with a zero-point per scale.
        signed: integer range ``[-2^(b-1), 2^(b-1)-1]`` if True, ``[0, 2^b-1]`` if False.
            Defaults to ``symmetric``.
        granularity: ``"per_tensor"`` (one scale), ``"per_channel"`` (one scale per index
            along ``axis``) or ``"per_group"`` (``axis`` cut into contiguous groups of
            ``group_size`` elements, one scale per group).
        axis: the channel axis for per-channel (default 0), the axis cut into groups for
            per-group (default -1).
        group_size: elements per group, per-group only.
        pad: per-group only: allow an axis length that ``group_size`` does not divide by
            padding the last group with zeros (which never changes its range, because ranges
            always contain 0). Without it such a shape is an error.
        codebook: None for uniform (affine) levels; ``"nf4"``, ``"log2"`` or ``"kmeans"``
            for non-linear levels scaled per tensor / channel / group.

    Example:
        >>> QScheme(bits=4, symmetric=False, granularity="per_group", group_size=64).qmax
        15
    """

    bits: int = 8
    symmetric: bool = True
    signed: bool | None = None
    granularity: Granularity = "per_tensor"
    axis: int | None = None
    group_size: int | None = None
    pad: bool = False
    codebook: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise SchemeError(f"bits must be an integer from 1 to 8, got {self.bits!r}")
        if self.granularity not in GRANULARITIES:
            raise SchemeError(
                f"granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}"
            )
        if self.signed is None:
            object.__setattr__(self, "signed", self.symmetric)
        if self.axis is not None:
            if isinstance(self.axis, bool) or not isinstance(self.axis, int):
                raise SchemeError(f"axis must be an integer (e.g. 0 or -1), got {self.axis!r}")
            if self.granularity == "per_tensor":
                raise SchemeError(
                    f"axis={self.axis} has no meaning for granularity='per_tensor'; "
                    "drop it or use 'per_channel' / 'per_group'"
                )
        if self.axis is None and self.granularity != "per_tensor":
            object.__setattr__(self, "axis", 0 if self.granularity == "per_channel" else -1)
        if self.granularity == "per_group":
            if self.group_size is None:
                raise SchemeError(
                    "per_group needs group_size, e.g. QScheme(granularity='per_group', "
                    "group_size=128)"
                )
            if not isinstance(self.group_size, int) or self.group_size < 1:
                raise SchemeError(f"group_size must be a positive integer, got {self.group_size!r}")
        elif self.group_size is not None:
            raise SchemeError(
                f"group_size={self.group_size} only applies to granularity='per_group' "
                f"(got {self.granularity!r}); drop it or switch granularity"
            )
        if self.pad and self.granularity != "per_group":
            raise SchemeError("pad=True only applies to granularity='per_group'")
        if self.codebook is not None:
            if self.codebook not in CODEBOOKS:
                raise SchemeError(
                    f"codebook must be None or one of {', '.join(CODEBOOKS)}, got {self.codebook!r}"
                )
            if self.codebook == "nf4" and self.bits != 4:
                raise SchemeError(f"the nf4 codebook has 16 levels: use bits=4, not {self.bits}")
            if self.codebook == "log2" and self.bits < 2:
                raise SchemeError(
                    "the log2 codebook needs bits >= 2 (one level for 0, one per sign)"
                )
        elif self.symmetric and self.bits == 1:
            raise SchemeError(
                "1-bit symmetric quantization has no level on each side of 0; use "
                "symmetric=False (levels {0, 1} times scale) or a codebook"
            )

    @property
    def qmin(self) -> int:
        """Smallest integer level."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        """Largest integer level."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def levels(self) -> int:
        return 1 << self.bits

    def describe(self) -> str:
        """A short human-readable name, e.g. ``int4 asym per_group(64)``."""
        if self.codebook == "nf4":
            kind = "nf4"
        elif self.codebook:
            kind = f"{self.codebook}-{self.bits}bit"
        else:
            kind = f"{'int' if self.signed else 'uint'}{self.bits}"
        sym = "sym" if self.symmetric else "asym"
        gran = {
            "per_tensor": "per_tensor",
            "per_channel": f"per_channel(axis={self.axis})",
            "per_group": f"per_group({self.group_size})",
        }[self.granularity]
        return f"{kind} {sym} {gran}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> QScheme:
        """The scheme :meth:`to_dict` wrote.

        Raises:
            SchemeError: ``data`` is not a dict, or holds a key QScheme does not have.

        Example:
            >>> QScheme.from_dict({"bits": 4, "symmetric": False}).qmax
            15
        """
        if not isinstance(data, dict):
            raise SchemeError(f"a scheme is a dict of QScheme fields, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise SchemeError(
                f"unknown QScheme key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys: {', '.join(known)}"
            )
        return cls(**data)
