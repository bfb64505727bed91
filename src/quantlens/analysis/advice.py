"""Debug advice: turn the measurements into one concrete suggestion per problem layer.

The evidence comes from :func:`~quantlens.analysis.sensitivity` (what each layer costs
alone), :func:`~quantlens.analysis.compare_layers` (weight vs output error, where the
error jumps) and :func:`~quantlens.analysis.activation_ranges` (how heavy-tailed the
layer's activations are, and which observer's range gives the least error). The rules,
first match wins per layer:

1. weight error dominates and the config has a narrower width to leave: *raise its bits*;
2. weight error dominates under per-tensor weights: *switch to per-channel*;
3. another observer's range measures at least :data:`MIN_OBSERVER_GAIN_DB` better on the
   layer's activations than the configured one: *use that observer* (percentile / MSE /
   entropy), for methods that quantize activations;
4. the layer is small (under 5% of the parameters): *skip it* (keep it in float);
5. otherwise: *raise its bits* if possible, else *skip it*;

and once for the whole model: when no single layer accounts for most of the drop (the
loss is spread), *QAT* for int8 methods.

Advice only fires for effects that matter. A layer is a problem layer when quantizing it
alone costs at least a tenth of the whole model's drop *and* at least an absolute floor,
the metric's ``min_loss`` (carried by the :class:`SensitivityResult`):
:data:`MIN_DROP_POINTS` points of accuracy / cosine / agreement, or
:data:`MIN_NOISE_PERCENT` % noise power under the SQNR metric (an SQNR of 30 dB, the
planner's default budget); a user metric, of unknown scale, has none. A whole model whose
drop is below the floor gets no advice.

Each :class:`Advice` carries an ``override`` config (or a skip) so the suggestions can be
applied with :func:`apply_advice`.

Example:
    >>> tips = advise(config, sens, layers=cmp, ranges=rng)
    >>> for tip in tips: print(tip)
    >>> fixed = apply_advice(config, tips)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from quantlens.analysis.layers import LayerComparison
from quantlens.analysis.ranges import RangeReport
from quantlens.analysis.scoring import MIN_DROP_POINTS, MIN_NOISE_PERCENT
from quantlens.analysis.sensitivity import SensitivityResult, escape
from quantlens.methods.base import QuantConfig

__all__ = [
    "MIN_DROP_POINTS",
    "MIN_NOISE_PERCENT",
    "Advice",
    "advise",
    "apply_advice",
    "quantizes_activations",
]

NEXT_BITS = {1: 2, 2: 4, 3: 4, 4: 8, 5: 8, 6: 8, 7: 8}
SMALL_LAYER = 0.05  # share of the parameters under which skipping a layer is cheap
WEIGHT_DOMINATES_DB = (
    3.0  # weight SQNR this far below the layer's own output SQNR: the weights are to blame
)
SPREAD = 0.3  # the worst layer explains less than this share of the drop: the loss is spread
RELATIVE_FLOOR = 0.1  # a problem layer explains at least this share of the whole model's drop
# ... and at least the metric's min_loss: MIN_DROP_POINTS or MIN_NOISE_PERCENT (from scoring)
MIN_OBSERVER_GAIN_DB = (
    1.0  # the observer tip needs at least this measured SQNR gain on the activations
)


@dataclass
class Advice:
    """One suggestion.

    Attributes:
        layer: the module name ("" for the whole model).
        action: ``"raise_bits"``, ``"per_channel"``, ``"observer"``, ``"skip"`` or ``"qat"``.
        suggestion: the sentence to show.
        evidence: the measurements behind it.
        override: the config to use for the layer (None with ``action == "skip"`` or
            ``"qat"``).
        skip: with ``action == "skip"``, the skip patterns (the layer and what is fused into it).
    """

    layer: str
    action: str
    suggestion: str
    evidence: str
    override: QuantConfig | None = None
    skip: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = self.layer or "(model)"
        return f"{where}: {self.suggestion}  [{self.evidence}]"

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "action": self.action,
            "suggestion": self.suggestion,
            "evidence": self.evidence,
            "override": self.override.to_dict() if self.override is not None else None,
            "skip": list(self.skip),
        }


def _has(config: QuantConfig, name: str) -> bool:
    return name in {f.name for f in fields(config)}


def _bits(config: QuantConfig) -> int | None:
    for name in ("weight_bits", "bits"):
        if _has(config, name) and getattr(config, name) is not None:
            return getattr(config, name)
    return None


def _raise_bits(config: QuantConfig) -> QuantConfig | None:
    bits = _bits(config)
    if bits is None or bits not in NEXT_BITS or not _has(config, "bits"):
        return None
    changes = {"bits": NEXT_BITS[bits]}
    if _has(config, "weight_bits"):
        changes["weight_bits"] = None
    return config.replace(skip=(), overrides=(), **changes)


def quantizes_activations(config: QuantConfig) -> bool:
    """Whether ``config``'s method quantizes activations with calibrated ranges (it has an
    activation ``observer``: Static, QAT; Dynamic takes each batch's range at run time), so
    activation ranges and observer advice apply.

    Example:
        >>> quantizes_activations(ql.Static()), quantizes_activations(ql.WeightOnly())
        (True, False)
    """
    return _has(config, "observer")


def problem_layers(sens: SensitivityResult, *, top: int = 5) -> list:
    """The rows of ``sens`` that explain a real part of the drop and cost at least the
    absolute floor (most sensitive first; see the module docstring)."""
    floor = max(RELATIVE_FLOOR * abs(sens.full_drop), sens.min_loss, 1e-9)
    return [r for r in sens.rows if r.drop >= floor][:top]


def advise(
    config: QuantConfig,
    sens: SensitivityResult,
    *,
    layers: LayerComparison | None = None,
    ranges: RangeReport | None = None,
    top: int = 5,
) -> list[Advice]:
    """Concrete suggestions for the layers that cost most (see the module docstring).

    Args:
        config: the config that was measured.
        sens: its forward sensitivity (only one layer quantized at a time).
        layers: ``compare_layers(float_model, quantize(model, config), data)``, for the
            weight vs output error.
        ranges: ``activation_ranges(float_model, calib_data)``, for observer advice.
        top: at most this many layers.

    Returns:
        A list of :class:`Advice`, most sensitive layer first, the whole-model advice last.
    """
    total_params = sum(r.params for r in sens.rows) or 1
    out: list[Advice] = []
    unit = sens.loss_unit
    rows = problem_layers(sens, top=top)
    for row in rows:
        cost = (
            f"alone it costs {row.drop:.3g} {unit} of {sens.metric} (all layers: "
            f"{sens.full_drop:.3g})"
        )
        cmp = None
        if layers is not None:
            cmp = next(
                (x for x in layers.layers if x.name == row.name or x.float_name == row.name), None
            )
        act = None
        if ranges is not None:
            act = next((x for x in ranges.layers if x.name == row.name), None)
        raised = _raise_bits(config)
        weight_bad = (
            cmp is not None
            and cmp.weight_sqnr_db is not None
            and cmp.weight_sqnr_db < min(cmp.out_sqnr_db, cmp.own_sqnr_db) + WEIGHT_DOMINATES_DB
        )
        w_note = (
            f"; weight SQNR {cmp.weight_sqnr_db:.1f} dB, output {cmp.out_sqnr_db:.1f} dB"
            if weight_bad
            else ""
        )
        if weight_bad and raised is not None:
            out.append(
                Advice(
                    row.name,
                    "raise_bits",
                    f"raise its bits to {_bits(raised)} (override)",
                    cost + w_note,
                    raised,
                )
            )
        elif weight_bad and _has(config, "per_channel") and not config.per_channel:
            out.append(
                Advice(
                    row.name,
                    "per_channel",
                    "switch its weights to per-channel scales",
                    cost + w_note,
                    config.replace(skip=(), overrides=(), per_channel=True),
                )
            )
        elif (
            act is not None
            and quantizes_activations(config)
            and act.best_observer not in (None, getattr(config, "observer", None))
            and (gain := _observer_gain(act, config.observer)) >= MIN_OBSERVER_GAIN_DB
        ):
            out.append(
                Advice(
                    row.name,
                    "observer",
                    f"use the {act.best_observer} observer for its activations",
                    f"{cost}; its inputs reach {act.outlier_ratio:.1f}x their p99.9, "
                    f"{act.best_observer} range gives +{gain:.1f} dB",
                    config.replace(skip=(), overrides=(), observer=act.best_observer),
                )
            )
        elif row.params / total_params < SMALL_LAYER or raised is None:
            share = 100.0 * row.params / total_params
            group = sens.groups.get(row.name, [row.name])
            out.append(
                Advice(
                    row.name,
                    "skip",
                    "skip it (keep it in float)",
                    f"{cost}; it holds {share:.1f}% of the parameters "
                    f"({row.bytes_float / 1024:.1f} KB)",
                    skip=tuple(escape(m) for m in group),
                )
            )
        else:
            out.append(
                Advice(
                    row.name,
                    "raise_bits",
                    f"raise its bits to {_bits(raised)} (override)",
                    cost,
                    raised,
                )
            )
    worst = max((r.drop for r in sens.rows), default=0.0)
    if (
        sens.full_drop >= max(sens.min_loss, 1e-9)
        and worst < SPREAD * sens.full_drop
        and quantizes_activations(config)
    ):
        out.append(
            Advice(
                "",
                "qat",
                "the loss is spread over many layers: fine-tune with quantization-aware "
                "training (ql.QAT)",
                f"the worst layer explains {100 * worst / sens.full_drop:.0f}% of the drop of "
                f"{sens.full_drop:.3g} {unit}",
            )
        )
    return out


def _observer_gain(act, name: str) -> float:
    """dB the best observer's range gains over ``name``'s (over min-max when ``name`` was not
    measured; over 0 dB when neither was)."""
    try:
        current = act.range_of(name).sqnr_db
    except KeyError:
        current = (
            act.range_of("minmax").sqnr_db
            if any(r.observer == "minmax" for r in act.ranges)
            else 0.0
        )
    return act.range_of(act.best_observer).sqnr_db - current


def apply_advice(config: QuantConfig, advice: list[Advice]) -> QuantConfig:
    """``config`` with each layer suggestion applied: an override, or a skip.

    Example:
        >>> fixed = apply_advice(cfg, advise(cfg, sens))
        >>> qm = ql.quantize(model, fixed)
    """
    skip = list(config.skip)
    overrides = list(config.overrides)
    for tip in advice:
        if not tip.layer:
            continue
        if tip.action == "skip":
            skip.extend(tip.skip or (escape(tip.layer),))
        elif tip.override is not None:
            overrides.insert(0, (escape(tip.layer), tip.override))
    return config.replace(skip=tuple(skip), overrides=tuple(overrides))
