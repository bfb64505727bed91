"""What a comparison found, as values: :class:`Comparison` holds the :class:`Row` of each
model, the run's :class:`RunInfo`, the :class:`Budget` of the recommendation, the
per-layer errors and the optional :class:`Analysis`.

``Comparison.to_dict()`` is the ``results.json`` format and ``Comparison.from_dict`` reads
it back, files of older quantlens versions included. :meth:`Comparison.to_json` writes it
as strict JSON (:mod:`quantlens.files.strict_json`).

The records that used to be dicts (:class:`RunInfo`, :class:`LayerErrorRow`) still answer
``info["task"]`` for code written against those dicts; new code reads the attributes.

Example:
    >>> comparison = Comparison.from_json(Path("results.json").read_text())
    >>> comparison.recommended.name, comparison.baseline.accuracy
    ('static', 99.33)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from quantlens.analysis.layers import LayerComparison
from quantlens.analysis.ranges import RangeReport
from quantlens.analysis.sensitivity import SensitivityResult
from quantlens.compare import recommend
from quantlens.compare.row import LM_FIELDS, Row, Status, runtime_row_name
from quantlens.compare.settings import Budget
from quantlens.errors import InputError
from quantlens.files.strict_json import from_json_text, to_json_text

Task = Literal["classification", "embedding", "outputs", "causal-lm"]


class DictAccess:
    """``record["field"]`` (read, write, ``in``, ``get``) on a dataclass, for code written
    when the record was a dict."""

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self:
            raise KeyError(key)
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self else default


@dataclass
class RunInfo(DictAccess):
    """How the rows were measured (``results.json``'s ``"settings"``).

    Attributes:
        reps, warmup, threads, batch_size: the latency settings and the timed batch's size.
        qat_epochs: QAT fine-tuning epochs; memory: peak memory was measured.
        task: what the quality column means (``"classification"``: accuracy against labels,
            ``"embedding"``: similarity to float, ``"outputs"``: agreement with float).
        samples: evaluation samples.
        calibration: a note on the calibration data (set when none was given).
        runtimes: the runtimes measured, when more than ``torch`` (``Measure.runtimes``).
        ppl_window, ppl_stride, prompt_tokens, new_tokens: how a causal LM was measured.
        float_note: what the float reference is (shown with the figures).
        processes: under a process group, how many processes measured the rows and how
            latency was measured (one per machine, or pinned to separate cores).
        extra: keys of another quantlens version, kept as they were.
    """

    reps: int | None = None
    warmup: int | None = None
    threads: int | None = None
    batch_size: int | None = None
    qat_epochs: int | None = None
    memory: bool | None = None
    task: Task | None = None
    samples: int | None = None
    calibration: str | None = None
    runtimes: list[str] | None = None
    ppl_window: int | None = None
    ppl_stride: int | None = None
    prompt_tokens: int | None = None
    new_tokens: int | None = None
    float_note: str | None = None
    processes: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "extra" and getattr(self, f.name) is not None
        }
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping) -> RunInfo:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in data.items() if k in known},
            extra={k: v for k, v in data.items() if k not in known},
        )


@dataclass
class LayerErrorRow(DictAccess):
    """One layer of a method's per-layer error (the ``layer_error.png`` plot); SQNR in dB,
    ``inf`` where exact, None where not defined."""

    name: str
    kind: str
    out_sqnr_db: float | None = None
    own_sqnr_db: float | None = None
    weight_sqnr_db: float | None = None
    jump: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> LayerErrorRow:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def layer_error_rows(data: Mapping[str, Any] | None) -> dict[str, list[LayerErrorRow]]:
    """``{row name: [LayerErrorRow, ...]}`` from rows or their dicts."""
    return {
        str(name): [x if isinstance(x, LayerErrorRow) else LayerErrorRow.from_dict(x) for x in rows]
        for name, rows in (data or {}).items()
    }


@dataclass
class Analysis:
    """Why one row loses what it loses (``compare(..., analysis=True)``).

    Attributes:
        row: the name of the row explained.
        sensitivity: its config's per-layer sensitivity (its ``notes`` include the
            warnings of that run).
        layers: its layer-by-layer error on the model the comparison measured.
        ranges: the float model's activation ranges (methods that quantize activations).
    """

    row: str
    sensitivity: SensitivityResult
    layers: LayerComparison | None = None
    ranges: RangeReport | None = None

    def to_dict(self) -> dict:
        """``SensitivityResult.to_dict()`` plus ``"row"``, ``"layers"`` and ``"ranges"``."""
        out = self.sensitivity.to_dict()
        out["row"] = self.row
        if self.layers is not None:
            out["layers"] = self.layers.to_dict()
        if self.ranges is not None:
            out["ranges"] = self.ranges.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> Analysis:
        layers, ranges = data.get("layers"), data.get("ranges")
        return cls(
            str(data.get("row")),
            SensitivityResult.from_dict(dict(data)),
            LayerComparison.from_dict(layers) if layers else None,
            RangeReport.from_dict(ranges) if ranges else None,
        )


@dataclass
class Comparison:
    """Rows of one comparison run, how they were produced, and what they recommend.

    Attributes:
        rows: one :class:`Row` per model, float first.
        environment: versions, engine, CPU features and threads of the run
            (``quantlens doctor``'s data).
        command: the command line that produced it (None from Python).
        settings: how the rows were measured (a dict given here becomes a :class:`RunInfo`).
        interrupted: the run was stopped (Ctrl-C) before every method ran.
        budget: what :attr:`recommended` may lose and minimises.
        layer_errors: ``{row name: per-layer error}`` (dicts given here become
            :class:`LayerErrorRow`).
        analysis: the optional :class:`Analysis` of one row.
    """

    rows: list[Row]
    environment: dict
    command: str | None = None
    settings: RunInfo = field(default_factory=RunInfo)
    interrupted: bool = False
    budget: Budget = field(default_factory=Budget)
    layer_errors: dict[str, list[LayerErrorRow]] = field(default_factory=dict)
    analysis: Analysis | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.settings, RunInfo):
            self.settings = RunInfo.from_dict(self.settings or {})
        self.layer_errors = layer_error_rows(self.layer_errors)
        if isinstance(self.analysis, Mapping):
            self.analysis = Analysis.from_dict(self.analysis)

    # --- reading -------------------------------------------------------------------------------

    @property
    def task(self) -> Task | None:
        """What the quality column means (see :class:`RunInfo`)."""
        return self.settings.task

    @property
    def baseline(self) -> Row | None:
        """The float row (None when it failed)."""
        return recommend.baseline(self.rows)

    def row(self, name: str) -> Row:
        """The row called ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise InputError(f"no row {name!r}; rows: {', '.join(r.name for r in self.rows)}")

    def accuracy_drop(self, row: Row) -> float | None:
        """Points of quality lost vs float (positive = worse), or None when unknown."""
        return recommend.accuracy_drop(row, self.baseline)

    def perplexity_increase(self, row: Row) -> float | None:
        """A causal LM's perplexity increase vs float in percent (positive = worse), or None."""
        return recommend.perplexity_increase(row, self.baseline)

    def best(self, budget: Budget | None = None) -> Row | None:
        """The quantized row with the best objective within ``budget`` (default
        :attr:`budget`); None when no method is within it (keep float)."""
        return recommend.best(self.rows, budget or self.budget)

    @property
    def recommended(self) -> Row | None:
        """:meth:`best` with :attr:`budget`."""
        return self.best()

    @property
    def recommendation(self) -> str:
        """One or two sentences: what to use and what it buys and costs."""
        return recommend.recommendation(self)

    # --- results.json -------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The ``results.json`` content (non-finite numbers still as floats)."""
        best = self.recommended
        data = {
            "rows": [r.to_dict() for r in self.rows],
            "environment": self.environment,
            "command": self.command,
            "settings": self.settings.to_dict(),
            "interrupted": self.interrupted,
            "recommended": best.name if best else None,
            "recommendation": self.recommendation,
            "max_accuracy_drop": self.budget.max_accuracy_drop,
            "objective": self.budget.objective,
            **(
                {"max_perplexity_increase": self.budget.max_perplexity_increase}
                if self.task == "causal-lm"
                else {}
            ),
            "layer_errors": {
                name: [x.to_dict() for x in rows] for name, rows in self.layer_errors.items()
            },
        }
        if self.analysis is not None:
            data["sensitivity"] = self.analysis.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> Comparison:
        """Read :meth:`to_dict`'s output (older files: the keys they lack take defaults)."""
        sensitivity = data.get("sensitivity")
        return cls(
            [Row.from_dict(r) for r in data.get("rows", [])],
            dict(data.get("environment", {})),
            data.get("command"),
            RunInfo.from_dict(data.get("settings", {})),
            bool(data.get("interrupted", False)),
            Budget(
                data.get("max_accuracy_drop", 1.0),
                data.get("objective", "latency"),
                data.get("max_perplexity_increase", 5.0),
            ),
            layer_error_rows(data.get("layer_errors")),
            Analysis.from_dict(sensitivity) if sensitivity else None,
        )

    def to_json(self) -> str:
        """:meth:`to_dict` as strict JSON (:func:`quantlens.files.strict_json.to_json_text`)."""
        return to_json_text(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Comparison:
        """A comparison read back from :meth:`to_json`'s text."""
        return cls.from_dict(from_json_text(text))


__all__ = [
    "LM_FIELDS",
    "Analysis",
    "Comparison",
    "DictAccess",
    "LayerErrorRow",
    "Row",
    "RunInfo",
    "Status",
    "Task",
    "layer_error_rows",
    "runtime_row_name",
]
