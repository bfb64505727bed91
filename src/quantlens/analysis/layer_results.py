"""What :func:`quantlens.analysis.layers.compare_layers` returns: one :class:`LayerError`
per matched layer inside a :class:`LayerComparison` (with ``to_dict`` / ``from_dict``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

__all__ = ["LayerComparison", "LayerError"]


@dataclass
class LayerError:
    """The error of one matched layer (SQNR in dB, higher is better; ``inf`` = exact).

    Attributes:
        name: the layer's name in the quantized model.
        kind: its class there (``"QLinear"``, ``"ConvReLU2d"``, ...).
        float_name: the float module whose output it is compared with (differs when fused).
        in_sqnr_db: SQNR of its input: the error it inherited.
        out_sqnr_db, out_cosine, out_max_abs: its output against the float output
            (accumulated error).
        own_sqnr_db: SQNR of its output when fed the float input (its own error; see the
            module docstring).
        weight_sqnr_db, weight_cosine, weight_max_abs: its dequantized weight against the
            float weight (None when it has none or the shapes differ).
        jump: True for the layer whose own quantization costs most.
        quantized: whether the layer is quantized (False: a float layer, such as a
            BatchNorm a weight-only method leaves alone, that only passes error on).
        isolated: ``own_sqnr_db`` was measured in isolation (False: estimated).
    """

    name: str
    kind: str
    float_name: str
    in_sqnr_db: float
    out_sqnr_db: float
    out_cosine: float
    out_max_abs: float
    own_sqnr_db: float
    weight_sqnr_db: float | None = None
    weight_cosine: float | None = None
    weight_max_abs: float | None = None
    jump: bool = False
    quantized: bool = True
    isolated: bool = True

    @property
    def drop_db(self) -> float:
        """SQNR lost between its input and its output (``in - out``; ``inf`` inputs count as 150
        dB)."""
        return min(self.in_sqnr_db, 150.0) - min(self.out_sqnr_db, 150.0)


@dataclass
class LayerComparison:
    """What :func:`compare_layers` found, layers in the float model's execution order.

    Attributes:
        layers: one :class:`LayerError` per matched layer.
        unmatched: ``{name: why}`` for layers found on one side only.
        fused: ``{quantized layer: [float modules fused into it]}``.
        samples: number of samples compared.
    """

    layers: list[LayerError]
    unmatched: dict[str, str] = field(default_factory=dict)
    fused: dict[str, list[str]] = field(default_factory=dict)
    samples: int = 0

    @property
    def jump(self) -> LayerError | None:
        """The layer whose own quantization costs most (lowest ``own_sqnr_db``)."""
        return next((layer for layer in self.layers if layer.jump), None)

    @property
    def quantized(self) -> list[LayerError]:
        """The quantized layers, in execution order."""
        return [x for x in self.layers if x.quantized]

    def __getitem__(self, name: str) -> LayerError:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "layers": [asdict(x) for x in self.layers],
            "unmatched": dict(self.unmatched),
            "fused": {k: list(v) for k, v in self.fused.items()},
            "samples": self.samples,
            "jump": self.jump.name if self.jump else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> LayerComparison:
        """Rebuild from :meth:`to_dict` (e.g. read back from a report's JSON)."""
        names = {f.name for f in fields(LayerError)}
        layers = [
            LayerError(**{k: v for k, v in row.items() if k in names})
            for row in data.get("layers", [])
        ]
        return cls(
            layers,
            dict(data.get("unmatched", {})),
            {k: list(v) for k, v in data.get("fused", {}).items()},
            int(data.get("samples", 0)),
        )

    def __str__(self) -> str:
        def f(v):
            return "-" if v is None else ("inf" if v == math.inf else f"{v:.1f}")

        head = (
            f"{'layer':<32} {'kind':<16} {'in dB':>7} {'out dB':>7} {'own dB':>7} "
            f"{'cos':>7} {'w dB':>7}"
        )
        lines = [head]
        for x in self.layers:
            mark = (
                "  <- error jumps here" if x.jump else ("" if x.isolated else "  (own: estimated)")
            )
            lines.append(
                f"{x.name[:32]:<32} {x.kind[:16]:<16} {f(x.in_sqnr_db):>7} {f(x.out_sqnr_db):>7} "
                f"{f(x.own_sqnr_db):>7} {x.out_cosine:>7.4f} {f(x.weight_sqnr_db):>7}{mark}"
            )
        for name, why in self.unmatched.items():
            lines.append(f"unmatched {name}: {why}")
        return "\n".join(lines)
