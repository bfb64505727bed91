"""What one ``ql.quantize`` call did: a :class:`LayerRecord` per layer (quantized, skipped,
or left in float and why) in a :class:`QuantSummary`, with model-wide notes and sizes.

Example:
    >>> qm = ql.quantize(model, ql.Dynamic())
    >>> print(qm.quantlens_summary)   # what was quantized, left in float and why
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from torch import nn

__all__ = ["LAYER_ACTIONS", "LayerAction", "LayerRecord", "QuantSummary"]


LayerAction = Literal["quantized", "skipped", "float"]
"""What quantize did with a module: quantized it, skipped it (a ``skip`` pattern), or left
it in float (the method does not support it, or it would not pay; the record says why)."""
LAYER_ACTIONS: tuple[str, ...] = get_args(LayerAction)


@dataclass
class LayerRecord:
    """What quantize did with one module."""

    name: str
    kind: str
    action: LayerAction
    method: str = ""
    detail: str = ""
    reason: str = ""
    bytes_before: int = 0
    bytes_after: int = 0


@dataclass
class QuantSummary:
    """The decisions of one ``ql.quantize`` call, layer by layer, plus notes.

    Attributes:
        records: one :class:`LayerRecord` per layer quantized, skipped or left in float
            (every layer that holds weights, candidates of the method or not).
        notes: model-wide remarks (casts, algorithm fallbacks, warnings).
        model_bytes_before, model_bytes_after: bytes of the whole model's state (parameters,
            buffers and packed quantized weights, tied tensors once) before and after
            quantization; None where not measured.
    """

    records: list[LayerRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model_bytes_before: int | None = None
    model_bytes_after: int | None = None

    def add(self, name: str, module: nn.Module | str, action: LayerAction, **fields: Any) -> None:
        """Record what happened to one module (a skip: :meth:`QuantContext.record_skip`)."""
        kind = module if isinstance(module, str) else type(module).__name__
        self.records.append(LayerRecord(name, kind, action, **fields))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def quantized(self) -> list[LayerRecord]:
        return [r for r in self.records if r.action == "quantized"]

    @property
    def skipped(self) -> list[LayerRecord]:
        return [r for r in self.records if r.action != "quantized"]

    def to_dict(self) -> dict:
        return {
            "records": [dataclasses.asdict(r) for r in self.records],
            "notes": list(self.notes),
            "model_bytes_before": self.model_bytes_before,
            "model_bytes_after": self.model_bytes_after,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> QuantSummary:
        """Inverse of :meth:`to_dict` (fields it does not know are ignored)."""
        names = {f.name for f in dataclasses.fields(LayerRecord)}
        records = [
            LayerRecord(**{k: v for k, v in r.items() if k in names})
            for r in data.get("records", [])
        ]
        return cls(
            records,
            list(data.get("notes", [])),
            data.get("model_bytes_before"),
            data.get("model_bytes_after"),
        )

    def __str__(self) -> str:
        before = sum(r.bytes_before for r in self.quantized)
        after = sum(r.bytes_after for r in self.quantized)
        lines = [f"quantized {len(self.quantized)} layer(s), left {len(self.skipped)} in float"]
        if self.model_bytes_before is not None and self.model_bytes_after is not None:
            lines.append(
                "whole model (parameters and buffers): "
                f"{_ratio(self.model_bytes_before, self.model_bytes_after)}"
            )
        if before:
            lines.append(f"quantized layers: {_ratio(before, after)}")
        groups: dict[tuple[str, str], list[str]] = {}
        for r in self.skipped:
            groups.setdefault((r.kind, r.reason or r.action), []).append(r.name or "(root)")
        for (kind, reason), names in groups.items():
            shown = ", ".join(names[:3]) + (
                f", ... ({len(names) - 3} more)" if len(names) > 3 else ""
            )
            lines.append(f"  float ({len(names)}): {kind}: {reason} [{shown}]")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _ratio(before: int, after: int) -> str:
    return f"{before / 1e6:.2f} MB -> {after / 1e6:.2f} MB ({before / max(after, 1):.2f}x smaller)"
