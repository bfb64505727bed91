"""Per-layer sensitivity: quantize one layer at a time and measure what it costs.

Forward mode quantizes only layer ``L`` (everything else float) and reports the metric's
drop; reverse mode quantizes everything *but* ``L`` and reports how much of the full
model's drop keeping ``L`` in float wins back. Either way the float model runs once over
the data (its outputs are cached, :class:`~quantlens.analysis.scoring.Evaluator`) and each
layer costs one forward pass of the variant.

Two strategies, chosen automatically:

- *swap* (module-replacing methods such as weight-only and dynamic): the model is quantized
  once; each variant swaps one quantized module into a float copy (or one float module
  into the quantized model) by name, no re-quantization;
- *requantize* (graph methods such as Static, whose result is a new graph): each variant is
  ``ql.quantize`` with a config whose ``skip`` keeps the other layers (and the BatchNorm /
  activation fused into them) in float.

Under a process group (``torchrun``) every rank builds the float outputs and the quantized
model alone, then measures every ``world_size``-th layer; the rows are gathered so that every
rank returns the same result as one process (the passes are deterministic).

Example:
    >>> result = ql.analysis.sensitivity(model, (x, y), ql.WeightOnly(bits=2), max_batches=4)
    >>> print(result)               # ranked table: layer, params, bytes, accuracy, drop
    >>> result.rows[0].name         # the most sensitive layer
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from quantlens.analysis.modules import execution_order, fused_followers
from quantlens.analysis.scoring import Evaluator
from quantlens.api import quantize
from quantlens.core.data import first_batch
from quantlens.core.distributed import is_distributed, local_only
from quantlens.core.progress import track
from quantlens.core.spread import spread
from quantlens.methods.base import QuantConfig, config_from_dict

__all__ = ["MIN_SAMPLES", "LayerSensitivity", "SensitivityResult", "escape", "sensitivity"]

MIN_SAMPLES = 100  # fewer samples than this: a warning (1 sample = 1% accuracy at 100)


def escape(name: str) -> str:
    """``name`` as an fnmatch pattern that matches exactly it (for ``skip`` / ``overrides``)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@dataclass
class LayerSensitivity:
    """One layer's row of a sensitivity table.

    Attributes:
        name: module name.
        kind: its float class.
        params: number of parameters of the float layer.
        bytes_float, bytes_quant: its weight bytes before and after quantization.
        value: the metric with only this layer quantized (reverse: all but this layer).
        drop: the metric's loss (see :mod:`quantlens.analysis.scoring`) with only this
            layer quantized; reverse: the full model's loss minus the loss with this
            layer kept in float (what keeping it float wins back).
    """

    name: str
    kind: str
    params: int
    bytes_float: int
    bytes_quant: int
    value: float
    drop: float

    @property
    def bytes_saved(self) -> int:
        return self.bytes_float - self.bytes_quant


@dataclass
class SensitivityResult:
    """A ranked sensitivity table (most sensitive first) and how it was measured.

    ``groups`` maps a layer to the modules fused into it (graph methods), which a skip of
    the layer must cover too; ``min_loss`` is the metric's smallest loss worth advice
    (:attr:`~quantlens.analysis.scoring.Metric.min_loss`)."""

    rows: list[LayerSensitivity]
    metric: str
    unit: str
    loss_unit: str
    baseline: float
    full_value: float
    full_drop: float
    samples: int
    reverse: bool
    strategy: str
    config: QuantConfig | None = None
    notes: list[str] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)
    min_loss: float = 0.0

    def __getitem__(self, name: str) -> LayerSensitivity:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    @property
    def drops(self) -> dict[str, float]:
        """``{layer: drop}`` in ranked order."""
        return {r.name: r.drop for r in self.rows}

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("rows", "config")}
        out["rows"] = [asdict(r) for r in self.rows]
        out["config"] = self.config.to_dict() if self.config is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SensitivityResult:
        """Rebuild from :meth:`to_dict` (e.g. read back from a report's JSON); a config that
        no longer reads back (an unregistered method) becomes None."""
        names = {f.name for f in fields(cls)} - {"rows", "config"}
        config = None
        if data.get("config"):
            try:
                config = config_from_dict(data["config"])
            except Exception:  # noqa: BLE001
                # the result stands without its config (plots show its name only)
                config = None
        rows = [LayerSensitivity(**r) for r in data.get("rows", [])]
        return cls(rows=rows, config=config, **{k: v for k, v in data.items() if k in names})

    def __str__(self) -> str:
        mode = "all quantized but the layer" if self.reverse else "only the layer quantized"
        head = (
            f"sensitivity ({mode}; {self.metric} on {self.samples} samples; float "
            f"{self.baseline:.2f}{self.unit}, all quantized {self.full_value:.2f}{self.unit}, drop "
            f"{self.full_drop:.3g} {self.loss_unit})"
        )
        columns = (
            f"{'#':>3} {'layer':<36} {'kind':<12} {'params':>9} {'KB saved':>9} "
            f"{self.metric:>10} {'drop':>9}"
        )
        lines = [head, columns]
        for i, r in enumerate(self.rows, 1):
            lines.append(
                f"{i:>3} {r.name[:36]:<36} {r.kind[:12]:<12} {r.params:>9,} "
                f"{r.bytes_saved / 1024:>9.1f} {r.value:>10.3f} {r.drop:>9.3g}"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# --- variants ------------------------------------------------------------------------------


def quantized_layers(q_model: nn.Module) -> list:
    """The summary records of the layers ``ql.quantize`` quantized in ``q_model``."""
    return list(q_model.quantlens_summary.quantized)


def _swappable(model: nn.Module, q_model: nn.Module, names: list[str]) -> bool:
    """Whether every quantized layer of ``q_model`` sits under the same name as in ``model``
    (a module-replacing method), so one module can be swapped in at a time."""
    if isinstance(q_model, torch.fx.GraphModule) or type(q_model) is not type(model):
        return False
    try:
        for name in names:
            model.get_submodule(name)
            q_model.get_submodule(name)
    except AttributeError:
        return False
    return True


class Variants:
    """Builds "only these layers quantized" variants of a model for one config.

    Args:
        model: the float model.
        config: the method config.
        calib_data: calibration data for methods that need it.
        example_batch: one batch, to find the modules fused into each layer.
    """

    def __init__(
        self,
        model: nn.Module,
        config: QuantConfig,
        *,
        calib_data=None,
        calib_batches=None,
        example_batch=None,
    ) -> None:
        self.model, self.config = model, config
        self.calib_data, self.calib_batches = calib_data, calib_batches
        self.full = quantize(
            model, config, calib_data=calib_data, calib_batches=calib_batches, progress=False
        )
        self.records = quantized_layers(self.full)
        self.names = [r.name for r in self.records]
        self.strategy = "swap" if _swappable(model, self.full, self.names) else "requantize"
        self.groups: dict[str, list[str]] = {n: [n] for n in self.names}
        if self.strategy == "requantize" and example_batch is not None:
            order = execution_order(model, example_batch)
            modules = dict(model.named_modules())
            stop = set(self.names)
            self.groups = {n: [n, *fused_followers(n, order, modules, stop)] for n in self.names}

    def skip_patterns(self, keep: set[str]) -> tuple[str, ...]:
        """Skip patterns leaving every layer but ``keep`` (and what is fused into them) float."""
        return tuple(escape(m) for n in self.names if n not in keep for m in self.groups[n])

    def only(self, keep: set[str]) -> nn.Module:
        """The model with only the layers in ``keep`` quantized."""
        if self.strategy == "swap":
            work = copy.deepcopy(self.model)
            for name in keep:
                work.set_submodule(name, self.full.get_submodule(name))
            return work
        cfg = self.config.replace(skip=tuple(self.config.skip) + self.skip_patterns(keep))
        return quantize(
            self.model,
            cfg,
            calib_data=self.calib_data,
            calib_batches=self.calib_batches,
            progress=False,
        )

    def swapped(self, model: nn.Module, name: str, source: nn.Module):
        """Context: ``model`` with its module ``name`` temporarily replaced by ``source``'s."""
        return _Swap(model, name, source.get_submodule(name))


class _Swap:
    def __init__(self, model: nn.Module, name: str, module: nn.Module) -> None:
        self.model, self.name, self.module = model, name, module

    def __enter__(self) -> nn.Module:
        self.saved = self.model.get_submodule(self.name)
        self.model.set_submodule(self.name, self.module)
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.set_submodule(self.name, self.saved)


def _params(model: nn.Module, name: str) -> int:
    try:
        return sum(p.numel() for p in model.get_submodule(name).parameters())
    except AttributeError:
        return 0


def warn_small(samples: int, what: str) -> None:
    """Warn that ``samples`` is too few for a meaningful estimate."""
    if samples < MIN_SAMPLES:
        warnings.warn(
            f"{what} used only {samples} sample(s): each sample is {100 / max(samples, 1):.1f}% of "
            "the measurement, so small differences between layers are noise; give at least "
            f"{MIN_SAMPLES} samples",
            stacklevel=3,
        )


# --- the entry point ---------------------------------------------------------------------


def sensitivity(
    model: nn.Module,
    data,
    config: QuantConfig,
    *,
    metric=None,
    reverse: bool = False,
    max_batches: int | None = None,
    calib_data=None,
    progress: bool | None = None,
    evaluator: Evaluator | None = None,
) -> SensitivityResult:
    """Rank the layers ``config`` quantizes by how much quantizing each one costs.

    Args:
        model: the float model (left unchanged).
        data: evaluation data, any form :func:`quantlens.core.data.iter_batches` accepts;
            with labels the default metric is accuracy, without it output SQNR.
        config: the method config whose per-layer effect is measured.
        metric: ``"accuracy"``, ``"cosine"``, ``"agreement"``, ``"sqnr"``,
            ``"perplexity"`` (a causal LM on one token stream: the drop is the perplexity
            increase in percent; the default for such a model and data), a callable
            ``fn(outputs, labels) -> float`` (higher is better) or None (see
            :mod:`quantlens.analysis.scoring`).
        reverse: quantize everything but one layer instead of only one layer.
        max_batches: measure on the first ``max_batches`` batches only (a subset; under
            perplexity, windows).
        calib_data: calibration data for methods that calibrate (default: ``data``; a
            token stream cut into the perplexity windows).
        progress: show a progress bar (default: when stderr is a terminal).
        evaluator: a ready :class:`Evaluator` (cached float outputs) to reuse.

    Returns:
        A :class:`SensitivityResult`, most sensitive layer first.

    Warns:
        UserWarning: fewer than :data:`MIN_SAMPLES` samples were used.

    Example:
        >>> res = sensitivity(model, test, ql.WeightOnly(bits=2), max_batches=4)
        >>> [(r.name, round(r.drop, 2)) for r in res.rows[:3]]
    """
    with local_only():  # every rank builds the same float outputs and quantized model alone
        ev = evaluator or Evaluator(model, data, metric=metric, max_batches=max_batches)
        warn_small(ev.samples, "the sensitivity estimate")
        batch = first_batch(data)
        variants = Variants(
            model,
            config,
            calib_data=calib_data if calib_data is not None else ev.calibration(),
            calib_batches=max_batches,
            example_batch=batch,
        )
        full = ev.measure(variants.full)
    work = copy.deepcopy(model) if variants.strategy == "swap" and not reverse else variants.full

    def one(rec) -> tuple[LayerSensitivity, bool]:
        """The row of one layer, and whether the metric never saw it."""
        name = rec.name
        with local_only():
            if variants.strategy == "swap":
                source = variants.full if not reverse else model
                with variants.swapped(work, name, source) as variant:
                    score = ev.measure(variant)
            else:
                keep = set(variants.names) - {name} if reverse else {name}
                score = ev.measure(variants.only(keep))
        drop = full.loss - score.loss if reverse else score.loss
        params = _params(model, name)
        row = LayerSensitivity(
            name, rec.kind, params, rec.bytes_before, rec.bytes_after, score.value, drop
        )
        return row, score.identical and not reverse

    # under a process group each rank measures every world_size-th layer; all get every row
    records = variants.records
    measured = (
        spread(records, one, what="measuring sensitivity passes")
        if is_distributed()
        else [one(rec) for rec in track(records, "sensitivity", enabled=progress)]
    )
    rows = [row for row, _ in measured]
    # quantized alone, the outputs stay bit-identical: the metric never sees them
    unseen = [row.name for row, blind in measured if blind]
    rows.sort(key=lambda r: (-r.drop if not math.isnan(r.drop) else math.inf, r.name))
    notes = []
    if len(rows) == 1:
        notes.append("the model has a single quantizable layer: its drop is the whole model's")
    if unseen:
        notes.append(
            f"{', '.join(unseen)}: the outputs are bit-identical with only this layer quantized, "
            f"so it does not reach the {ev.metric.name} metric (its drop of 0 says nothing about "
            "other uses)"
        )
    return SensitivityResult(
        rows,
        ev.metric.name,
        ev.metric.unit,
        ev.metric.loss_unit,
        ev.baseline,
        full.value,
        full.loss,
        ev.samples,
        reverse,
        variants.strategy,
        config,
        notes,
        {n: g for n, g in variants.groups.items() if len(g) > 1},
        ev.metric.min_loss,
    )
