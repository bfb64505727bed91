"""``ql.compare`` and the :class:`Report` it returns.

Example:
    >>> report = ql.compare(model, ["dynamic", "static", "w4"], data=test, calib_data=calib)
    >>> print(report.to_markdown())
    >>> report.best(max_accuracy_drop=1.0, objective="latency").name
    'static'
    >>> report.to_html("report.html")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from torch import nn

from quantlens.errors import InputError, check_number
from quantlens.eval.compare import Comparison, Row, run_comparison
from quantlens.eval.interrupts import raise_if_interrupted
from quantlens.eval.latency import DEFAULT_REPS, DEFAULT_WARMUP
from quantlens.eval.presets import check_names, make_config
from quantlens.files import update_directory, write_text_atomic
from quantlens.methods.base import QuantConfig
from quantlens.report import tables
from quantlens.report.analysis_plots import ANALYSIS_PLOT_FILES, write_analysis_plots
from quantlens.report.compare_analysis import (
    LayerRecorder,
    layer_result,
    range_result,
    run_analysis,
    sensitivity_result,
)
from quantlens.report.html import render_html
from quantlens.report.layers import layer_errors as per_layer_errors
from quantlens.report.plots import PLOT_FILES, write_plots

OBJECTIVES = ("latency", "size")

REPORT_FILES = (
    "results.json",
    "results.csv",
    "report.md",
    *PLOT_FILES,
    *ANALYSIS_PLOT_FILES.values(),
    "report.html",
)


class Report:
    """The result of :func:`compare`: rows, a recommendation, and ways to show them.

    Attributes:
        rows: one :class:`quantlens.eval.compare.Row` per model, float first.
        environment: versions, engine, CPU features and threads of the run.
        command: the command line that produced it (None from Python).
        interrupted: the run was stopped (Ctrl-C) before every method ran.
        max_accuracy_drop, objective: what :meth:`recommended` uses.
        sensitivity: the per-layer sensitivity run of one method (``SensitivityResult.to_dict()``
            plus ``"row"``, the row it explains), or None when the run had no analysis.
    """

    def __init__(
        self,
        comparison: Comparison,
        *,
        max_accuracy_drop: float = 1.0,
        objective: str = "latency",
        layer_errors: Mapping[str, list] | None = None,
        sensitivity: Mapping | None = None,
    ):
        self.comparison = comparison
        self.max_accuracy_drop = check_number("max_accuracy_drop", max_accuracy_drop, 0, 100)
        self.objective = objective
        self.layer_errors = dict(layer_errors or {})
        self.sensitivity = dict(sensitivity) if sensitivity else None

    # --- data ---------------------------------------------------------------------------------

    @property
    def rows(self) -> list[Row]:
        return self.comparison.rows

    @property
    def environment(self) -> dict:
        return self.comparison.environment

    @property
    def command(self) -> str | None:
        return self.comparison.command

    @property
    def interrupted(self) -> bool:
        return self.comparison.interrupted

    @property
    def baseline(self) -> Row | None:
        """The float row."""
        return next((r for r in self.rows if r.method == "float" and r.ok), None)

    def row(self, name: str) -> Row:
        """The row called ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise InputError(f"no row {name!r}; rows: {', '.join(r.name for r in self.rows)}")

    def accuracy_drop(self, row: Row) -> float | None:
        """Points of quality lost vs float (positive = worse), or None when unknown."""
        q, base = tables.quality(row), self.baseline
        bq = tables.quality(base) if base else None
        return None if q is None or bq is None else bq - q

    def best(
        self, max_accuracy_drop: float | None = None, objective: str | None = None
    ) -> Row | None:
        """The quantized row with the best ``objective`` among those losing at most
        ``max_accuracy_drop`` points of accuracy (or agreement) vs float.

        Args:
            max_accuracy_drop: allowed drop in percentage points (default: the report's, 1.0).
            objective: ``"latency"`` (lowest median) or ``"size"`` (smallest checkpoint).

        Returns:
            The row, or None when no method is within the budget (keep float).
        """
        max_drop = self.max_accuracy_drop if max_accuracy_drop is None else max_accuracy_drop
        check_number("max_accuracy_drop", max_drop, 0, 100)
        objective = objective or self.objective
        if objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        key = {"latency": lambda r: r.latency_ms, "size": lambda r: r.disk_bytes or r.memory_bytes}[
            objective
        ]
        candidates = [
            r
            for r in self.rows
            if r.ok
            and r.method != "float"
            and key(r) is not None
            and (drop := self.accuracy_drop(r)) is not None
            and drop <= max_drop
        ]
        return min(candidates, key=key) if candidates else None

    @property
    def recommended(self) -> Row | None:
        """:meth:`best` with the report's budget and objective."""
        return self.best()

    def recommendation(self) -> str:
        """One or two sentences: what to use and what it buys and costs."""
        base, best = self.baseline, self.recommended
        budget = f"{self.max_accuracy_drop:g}-point"
        if not self.rows and self.interrupted:
            return "Interrupted before the first model was measured: nothing to recommend."
        if base is None:
            return "The float model could not be measured, so nothing can be recommended."
        if best is None:
            tried = [r for r in self.rows if r.ok and r.method != "float"]
            if not tried:
                return "No quantization method succeeded; see the errors in the table."
            closest = min(
                tried,
                key=lambda r: self.accuracy_drop(r) if self.accuracy_drop(r) is not None else 1e9,
            )
            drop = self.accuracy_drop(closest)
            return (
                f"Keep the float model: no method stays within the {budget} accuracy budget "
                f"(closest: {closest.name}, {tables.points_change(-drop)}). Try QAT or a gentler "
                "config."
            )
        if (
            self.objective == "latency"
            and base.latency_ms
            and best.latency_ms
            and best.latency_ms > base.latency_ms
        ):
            small = self.best(objective="size")
            threads = best.threads or "?"
            return (
                f"No method is faster than float here ({threads} thread(s)): keep the float model "
                f"for speed. To save space, {small.name} is "
                f"{base.disk_bytes / small.disk_bytes:.1f}× smaller on disk within the {budget} "
                f"accuracy budget ({self._quality_name()}: "
                f"{tables.points_change(-self.accuracy_drop(small))})."
                if small is not None and base.disk_bytes and small.disk_bytes
                else (
                    f"No method is faster than float here ({threads} thread(s)): keep the float "
                    "model."
                )
            )
        parts = []
        if base.disk_bytes and best.disk_bytes:
            parts.append(f"{tables.size_change(base.disk_bytes, best.disk_bytes)} on disk")
        if base.latency_ms and best.latency_ms:
            ratio = base.latency_ms / best.latency_ms
            parts.append(f"{ratio:.2f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower")
        q, bq = tables.quality(best), tables.quality(base)
        acc = (
            f"{self._quality_name()} {q:.2f}% vs {bq:.2f}% float ({tables.points_change(q - bq)})"
            if q is not None and bq is not None
            else ""
        )
        goal = "fastest" if self.objective == "latency" else "smallest"
        body = "; ".join(p for p in (", ".join(parts), acc) if p)
        return (
            f"Use {best.name}: {body}. It is the {goal} method within the {budget} accuracy budget."
        )

    @property
    def task(self) -> str | None:
        """``"classification"``, ``"embedding"`` or ``"outputs"`` (what the quality column
        means)."""
        return self.comparison.settings.get("task")

    def _quality_name(self) -> str:
        return tables.quality_names(self.rows, self.task)[0].split(" (")[0]

    # --- outputs ------------------------------------------------------------------------------

    def to_markdown(self) -> str:
        """The recommendation and the table as Markdown."""
        lines = [
            "# quantlens comparison",
            "",
            f"**{self.recommendation()}**",
            "",
            tables.to_markdown(self.rows, self.task),
        ]
        if self.interrupted:
            lines += ["", "_Interrupted: only the rows above were measured._"]
        failed = [r for r in self.rows if not r.ok]
        if failed:
            lines += ["", "Failed:"] + [f"- {r.name}: {r.error}" for r in failed]
        if self.command:
            lines += ["", f"Command: `{self.command}`"]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        data = self.comparison.to_dict()
        best = self.recommended
        data.update(
            recommended=best.name if best else None,
            recommendation=self.recommendation(),
            max_accuracy_drop=self.max_accuracy_drop,
            objective=self.objective,
            layer_errors=self.layer_errors,
        )
        if self.sensitivity is not None:
            data["sensitivity"] = self.sensitivity
        return data

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """All rows, settings and environment as strict JSON; written to ``path`` when given.

        Non-finite numbers (the float row's SQNR against itself is infinite) are written as
        ``null`` and listed by JSON Pointer under ``"non_finite"``
        (:func:`quantlens.report.tables.to_json_text`); :meth:`from_json` restores them.
        """
        text = tables.to_json_text(self.to_dict())
        if path is not None:
            _write_text(path, text)
        return text

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """Raw numbers as CSV; written to ``path`` when given."""
        text = tables.to_csv_text(self.rows)
        if path is not None:
            _write_text(path, text)
        return text

    def plot(self, directory: str | os.PathLike) -> list[Path]:
        """Write the PNG plots into ``directory`` (with ``sensitivity.png`` when the run had an
        analysis); returns their paths."""
        paths = write_plots(self, Path(directory))
        return paths + self.plot_analysis(directory)

    def plot_analysis(self, directory: str | os.PathLike) -> list[Path]:
        """Write the analysis PNGs into ``directory`` (``sensitivity.png``, and
        ``layer_sqnr.png`` / ``activation_ranges.png`` when the analysis has them); [] without
        analysis."""
        if not self.sensitivity:
            return []
        return write_analysis_plots(
            Path(directory),
            sensitivity=sensitivity_result(self.sensitivity),
            layers=layer_result(self.sensitivity),
            ranges=range_result(self.sensitivity),
        )

    def to_html(
        self, path: str | os.PathLike, *, plot_dir: str | os.PathLike | None = None
    ) -> Path:
        """Write one self-contained HTML file (plots embedded; from ``plot_dir`` when
        :meth:`plot` already wrote them there)."""
        _write_text(
            path, render_html(self, plot_dir=Path(plot_dir) if plot_dir is not None else None)
        )
        return Path(path)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the whole report into ``directory``: ``results.json``, ``results.csv``,
        ``report.md``, the PNG plots and ``report.html``.

        The files are rendered into a staging folder beside ``directory`` and moved in
        together under a lock (:func:`quantlens.files.update_directory`): an error or Ctrl-C
        while rendering leaves the previous report there whole, two runs writing to one folder
        take turns, and the other files in the folder are left alone (plots an earlier report
        had and this one has not are removed).

        Returns:
            The real (symlink-resolved) folder.

        Raises:
            InputError: the folder cannot be written (the message says why).

        Example:
            >>> report.save("quantlens-report")
        """

        def stage(folder: Path) -> None:
            self.to_json(folder / "results.json")
            self.to_csv(folder / "results.csv")
            _write_text(folder / "report.md", self.to_markdown())
            self.plot(folder)
            self.to_html(folder / "report.html", plot_dir=folder)

        try:
            return update_directory(
                directory, stage, REPORT_FILES, stale=REPORT_FILES, error=InputError
            )
        except OSError as exc:
            raise InputError(
                f"cannot write the report into {directory} ({exc.strerror or exc}); give a folder "
                "you can write to (a report that was there is unchanged)"
            ) from exc

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Report:
        """A report read back from :meth:`to_json`."""
        data = tables.from_json_text(Path(path).read_text(encoding="utf-8"))
        return cls(
            Comparison.from_dict(data),
            max_accuracy_drop=data.get("max_accuracy_drop", 1.0),
            objective=data.get("objective", "latency"),
            layer_errors=data.get("layer_errors"),
            sensitivity=data.get("sensitivity"),
        )

    def __repr__(self) -> str:
        best = self.recommended
        return f"Report({len(self.rows)} rows, recommended={best.name if best else None!r})"

    def _repr_markdown_(self) -> str:  # notebooks
        return self.to_markdown()


def _write_text(path: str | os.PathLike, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


def _configs(methods, model: nn.Module | None = None) -> dict[str, QuantConfig]:
    """``{row name: config}`` from what ``compare`` accepts; preset names are made for ``model``."""
    if isinstance(methods, QuantConfig):
        return {methods.method: methods}
    if isinstance(methods, Mapping):
        return {
            str(k): (make_config(v, model) if isinstance(v, str) else v) for k, v in methods.items()
        }
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if isinstance(methods, Sequence):
        names = [m for m in methods if isinstance(m, str)]
        check_names(names)
        out = {}
        for m in methods:
            if isinstance(m, str):
                out[m] = make_config(m, model)
            elif isinstance(m, QuantConfig):
                out[m.method if m.method not in out else f"{m.method}-{len(out)}"] = m
            else:
                raise InputError(
                    f"cannot use a {type(m).__name__} as a method; give a config or a name"
                )
        return out
    raise InputError(
        "methods must be a dict of configs, a list of configs/names, or one config; got "
        f"{type(methods).__name__}"
    )


def compare(
    model: nn.Module,
    methods,
    *,
    data,
    calib_data=None,
    train_data=None,
    metric: Callable | None = None,
    example_inputs: tuple | None = None,
    max_accuracy_drop: float = 1.0,
    objective: str = "latency",
    reps: int = DEFAULT_REPS,
    warmup: int = DEFAULT_WARMUP,
    threads: int | None = None,
    qat_epochs: int = 1,
    memory: bool = True,
    layer_errors: bool = True,
    analysis: bool = False,
    analysis_batches: int | None = 4,
    progress: bool | None = None,
    command: str | None = None,
    on_start: Callable | None = None,
    on_row: Callable | None = None,
) -> Report:
    """Quantize ``model`` with every method, measure each against float, and report.

    Args:
        model: the float model (left untouched).
        methods: ``{name: config}``, a list of configs and/or preset names (``"dynamic"``,
            ``"static"``, ``"qat"``, ``"w8"``, ``"w4"``, ...), or ``"dynamic,w4"``; weight-only
            presets also cover the model's Conv2d layers when it has any (see
            :func:`quantlens.eval.presets.make_config`).
        data: evaluation data in any form ``iter_batches`` accepts; labels give accuracy.
        calib_data: calibration data (Static); default: the evaluation data (noted).
        train_data: labelled data QAT configs fine-tune on for ``qat_epochs`` epochs.
        metric: ``metric(outputs, labels) -> float`` for tasks other than classification.
        example_inputs: inputs for tracing and timing (default: the first batch of ``data``).
        max_accuracy_drop: accuracy points the recommendation may lose vs float.
        objective: ``"latency"`` or ``"size"``: what the recommendation minimises.
        reps, warmup, threads: latency settings; memory: measure peak memory in child processes.
        layer_errors: record per-layer quantization error of each method (for the plot).
        analysis: explain the recommended method (else the one closest to the budget): its
            per-layer sensitivity, its layer-by-layer error (on the model the comparison
            measured) and, for methods that quantize activations, the activation ranges,
            in the JSON (``"sensitivity"``), as PNGs and as a "Where the error comes from"
            section of the HTML (see :mod:`quantlens.report.compare_analysis`).
        analysis_batches: batches of ``data`` the sensitivity run uses (None: all).
        progress: progress bars (default: when stderr is a terminal).
        command: the command line to record in the report.
        on_start, on_row: callbacks, see :func:`quantlens.eval.compare.run_comparison`.

    Returns:
        A :class:`Report`. A method that fails is a row with its error; Ctrl-C returns
        the rows measured so far (``report.interrupted``).

    Example:
        >>> methods = {"dynamic": ql.Dynamic(), "w4": ql.WeightOnly(bits=4)}
        >>> report = ql.compare(model, methods, data=test)
        >>> report.to_html("report.html")
    """
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    configs = _configs(methods, model)
    errors: dict[str, list] = {}
    hook = None
    if layer_errors:

        def hook(row: Row, qmodel: nn.Module, batch) -> None:
            try:
                errors[row.name] = per_layer_errors(model, qmodel, [batch])
            except Exception as exc:  # noqa: BLE001
                # a diagnostic plot must not fail the run (a Ctrl-C is re-raised)
                raise_if_interrupted(exc)
                row.notes.append(
                    f"per-layer error not measured: {type(exc).__name__}: {str(exc)[:120]}"
                )

    # each row's layer-by-layer error, measured once for the analysis and the layer_errors plot
    recorder = LayerRecorder(model, errors=errors if layer_errors else None) if analysis else None
    comparison = run_comparison(
        model,
        configs,
        data=data,
        calib_data=calib_data,
        train_data=train_data,
        metric=metric,
        example_inputs=example_inputs,
        reps=reps,
        warmup=warmup,
        threads=threads,
        qat_epochs=qat_epochs,
        memory=memory,
        progress=progress,
        command=command,
        on_start=on_start,
        on_row=on_row,
        on_model=recorder or hook,
    )
    report = Report(
        comparison, max_accuracy_drop=max_accuracy_drop, objective=objective, layer_errors=errors
    )
    if analysis and not comparison.interrupted:
        try:
            report.sensitivity = run_analysis(
                report,
                model,
                configs,
                data=data,
                calib_data=calib_data if calib_data is not None else data,
                metric=metric,
                max_batches=analysis_batches,
                progress=progress,
                layers=recorder.results,
            )
        except KeyboardInterrupt:  # keep the measured rows
            comparison.interrupted = True
    return report
