"""What :func:`quantlens.analysis.planner.search_plan` returns: a
:class:`MixedPrecisionPlan` of per-layer :class:`LayerChoice` s, with the
:class:`UniformPoint` s measured beside it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from quantlens.analysis.plan_search import LayerTable
from quantlens.methods.base import QuantConfig

__all__ = ["LayerChoice", "MixedPrecisionPlan", "UniformPoint"]


@dataclass
class LayerChoice:
    """One layer's planned precision: ``bits`` None = float; predicted loss at that choice."""

    name: str
    kind: str
    params: int
    bits: int | None
    bytes: int
    predicted_loss: float


@dataclass
class UniformPoint:
    """A measured uniform configuration (every layer at ``bits``), to compare the plan with."""

    bits: int | None
    size_bytes: int
    value: float
    drop: float


@dataclass
class MixedPrecisionPlan:
    """What :func:`search_plan` chose and what measuring it gave.

    Attributes:
        config: the plan as a config (``ql.quantize(model, plan.config)``).
        layers: per-layer choices.
        metric, unit, loss_unit: the metric (see :mod:`quantlens.analysis.scoring`).
        baseline: the float model's metric value.
        budget: ``{"max_drop": ...}``, ``{"min_sqnr_db": ...}``, ``{"max_ppl_increase": ...}``
            (percent, a causal LM) or ``{"target_size": ...}``.
        predicted_drop: the sum of the per-layer losses of the choice.
        measured_value, measured_drop: the plan's metric when quantized and run.
        size_bytes, float_bytes: measured model bytes of the plan and of the float model.
        met_budget: whether the measured plan is within the budget.
        uniform: uniform-bit-width points measured on the same data, for comparison.
        measurements: number of full-model evaluations spent verifying.
        samples: samples measured on.
        table: the per-layer measurements (``search_plan(..., table=plan.table)`` reuses them).
        final_moves: moves the measured finishing pass took, ``(layer, from bits, to bits)``.
        complete: the finishing pass ended with a round in which every single move was
            measured and refused (no single move left that fits the budget).
        unused: layers that do not reach the metric (outputs bit-identical when quantized).
    """

    config: QuantConfig
    layers: list[LayerChoice]
    metric: str
    unit: str
    loss_unit: str
    baseline: float
    budget: dict
    predicted_drop: float
    measured_value: float
    measured_drop: float
    size_bytes: int
    float_bytes: int
    met_budget: bool
    uniform: list[UniformPoint] = field(default_factory=list)
    measurements: int = 0
    samples: int = 0
    table: LayerTable | None = None
    final_moves: list[tuple[str, int | None, int | None]] = field(default_factory=list)
    complete: bool = False
    unused: list[str] = field(default_factory=list)

    @property
    def bits(self) -> dict[str, int | None]:
        return {c.name: c.bits for c in self.layers}

    def to_dict(self) -> dict:
        skip = ("config", "layers", "uniform", "table")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        out.update(
            config=self.config.to_dict(),
            layers=[asdict(c) for c in self.layers],
            uniform=[asdict(u) for u in self.uniform],
            final_moves=[list(m) for m in self.final_moves],
            table=self.table.to_dict() if self.table is not None else None,
        )
        return out

    def __str__(self) -> str:
        def bits(b):
            return "float" if b is None else f"{b}-bit"

        lines = [
            f"mixed-precision plan ({self.metric} on {self.samples} samples, budget {self.budget})",
            f"{'layer':<40} {'kind':<12} {'params':>9} {'bits':>6} {'KB':>8} {'pred. loss':>10}",
        ]
        for c in self.layers:
            lines.append(
                f"{c.name[:40]:<40} {c.kind[:12]:<12} {c.params:>9,} {bits(c.bits):>6} "
                f"{c.bytes / 1024:>8.1f} {c.predicted_loss:>10.3g}"
            )
        verdict = "meets" if self.met_budget else "MISSES"
        lines.append(
            f"plan: {self.size_bytes / 1e6:.3f} MB (float {self.float_bytes / 1e6:.3f} MB), "
            f"{self.metric} {self.measured_value:.3f}{self.unit}, drop {self.measured_drop:.3g} "
            f"{self.loss_unit} measured ({self.predicted_drop:.3g} predicted): {verdict} the budget"
        )
        if self.final_moves:
            lines.append(
                "finishing pass took: "
                + ", ".join(f"{n} {bits(a)} -> {bits(b)}" for n, a, b in self.final_moves)
            )
        if self.unused:
            lines.append(
                f"do not reach the {self.metric} metric (outputs unchanged when quantized), so "
                f"their saving is free here only: {', '.join(self.unused)}"
            )
        for u in self.uniform:
            lines.append(
                f"uniform {bits(u.bits)}: {u.size_bytes / 1e6:.3f} MB, {self.metric} {u.value:.3f}"
                f"{self.unit}, drop {u.drop:.3g} {self.loss_unit}"
            )
        return "\n".join(lines)
