"""The :class:`Report` ``ql.compare`` returns: a :class:`~quantlens.compare.Comparison`
and the ways to show it (Markdown, CSV, JSON, PNG plots, one HTML file, a report folder).

Example:
    >>> report = ql.compare(model, ["dynamic", "static", "w4"], data=test, calib_data=calib)
    >>> print(report.to_markdown())
    >>> report.best(max_accuracy_drop=1.0, objective="latency").name
    'static'
    >>> report.to_html("report.html")
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quantlens.compare.results import Analysis, Comparison, LayerErrorRow, Row, layer_error_rows
from quantlens.compare.settings import OBJECTIVES, Budget, Objective
from quantlens.errors import InputError, check_number
from quantlens.files import update_directory, write_text_atomic
from quantlens.files.strict_json import from_json_text
from quantlens.report.analysis_plots import ANALYSIS_PLOT_FILES, write_analysis
from quantlens.report.csv_table import render_csv
from quantlens.report.html import render_html
from quantlens.report.markdown import render_markdown
from quantlens.report.plots import LM_PLOT_FILES, PLOT_FILES, write_plots

__all__ = ["OBJECTIVES", "REPORT_FILES", "Report"]

REPORT_FILES = (
    "results.json",
    "results.csv",
    "report.md",
    *PLOT_FILES,
    *LM_PLOT_FILES,
    *ANALYSIS_PLOT_FILES.values(),
    "report.html",
)


class Report:
    """The result of ``ql.compare``: a :class:`~quantlens.compare.Comparison` (rows, a
    recommendation, the optional analysis) and ways to show it.

    Args:
        comparison: what to render.
        max_accuracy_drop, objective: the recommendation's budget (default: the
            comparison's, 1 point and latency unless it was given another).
        max_perplexity_increase: a causal LM's budget, percent above float perplexity
            (default: the comparison's, 5%).
        layer_errors: per-layer errors to set (rows or their dicts).
        sensitivity: an :class:`~quantlens.compare.Analysis` (or its ``to_dict()``) to set.

    Attributes:
        comparison: the typed results; rows, environment, command, interrupted, baseline,
            task, layer_errors and analysis read through to it.

    Example:
        >>> Report(Comparison.from_json(text), max_accuracy_drop=0.5).recommended
    """

    def __init__(
        self,
        comparison: Comparison,
        *,
        max_accuracy_drop: float | None = None,
        objective: Objective | None = None,
        layer_errors: Mapping[str, list] | None = None,
        max_perplexity_increase: float | None = None,
        sensitivity: Analysis | Mapping | None = None,
    ):
        changes: dict[str, Any] = {}
        if (max_accuracy_drop, objective, max_perplexity_increase) != (None, None, None):
            changes["budget"] = Budget(
                comparison.budget.max_accuracy_drop
                if max_accuracy_drop is None
                else check_number("max_accuracy_drop", max_accuracy_drop, 0, 100),
                objective or comparison.budget.objective,
                comparison.budget.max_perplexity_increase
                if max_perplexity_increase is None
                else max_perplexity_increase,
            )
        if layer_errors is not None:
            changes["layer_errors"] = layer_error_rows(layer_errors)
        if sensitivity:
            changes["analysis"] = _analysis(sensitivity)
        self.comparison = dataclasses.replace(comparison, **changes) if changes else comparison

    # --- data ---------------------------------------------------------------------------------

    @property
    def rows(self) -> list[Row]:
        """One :class:`~quantlens.compare.Row` per model, float first."""
        return self.comparison.rows

    @property
    def environment(self) -> dict:
        """Versions, engine, CPU features and threads of the run."""
        return self.comparison.environment

    @property
    def command(self) -> str | None:
        """The command line that produced it (None from Python)."""
        return self.comparison.command

    @property
    def interrupted(self) -> bool:
        """The run was stopped (Ctrl-C) before every method ran."""
        return self.comparison.interrupted

    @property
    def budget(self) -> Budget:
        """What :attr:`recommended` may lose and minimises."""
        return self.comparison.budget

    @property
    def max_accuracy_drop(self) -> float:
        """Accuracy points :attr:`recommended` may lose vs float."""
        return self.comparison.budget.max_accuracy_drop

    @property
    def objective(self) -> Objective:
        """What :attr:`recommended` minimises: ``"latency"`` or ``"size"``."""
        return self.comparison.budget.objective

    @property
    def layer_errors(self) -> dict[str, list[LayerErrorRow]]:
        """``{row name: per-layer error}`` (the ``layer_error.png`` plot)."""
        return self.comparison.layer_errors

    @property
    def analysis(self) -> Analysis | None:
        """The analysis of one row (``compare(..., analysis=True)``), or None."""
        return self.comparison.analysis

    @property
    def sensitivity(self) -> dict | None:
        """The analysis as ``results.json`` has it (``SensitivityResult.to_dict()`` plus
        ``"row"``, ``"layers"``, ``"ranges"``), or None; :attr:`analysis` is the typed form."""
        analysis = self.comparison.analysis
        return analysis.to_dict() if analysis is not None else None

    @sensitivity.setter
    def sensitivity(self, value: Analysis | Mapping | None) -> None:
        self.comparison.analysis = _analysis(value) if value else None

    @property
    def baseline(self) -> Row | None:
        """The float row."""
        return self.comparison.baseline

    @property
    def task(self) -> str | None:
        """``"classification"``, ``"embedding"`` or ``"outputs"`` (what the quality column
        means)."""
        return self.comparison.task

    def row(self, name: str) -> Row:
        """The row called ``name``."""
        return self.comparison.row(name)

    def accuracy_drop(self, row: Row) -> float | None:
        """Points of quality lost vs float (positive = worse), or None when unknown."""
        return self.comparison.accuracy_drop(row)

    def best(
        self, max_accuracy_drop: float | None = None, objective: Objective | None = None
    ) -> Row | None:
        """The quantized row with the best ``objective`` among those losing at most
        ``max_accuracy_drop`` points of accuracy (or agreement) vs float.

        Args:
            max_accuracy_drop: allowed drop in percentage points (default: the report's, 1.0).
            objective: ``"latency"`` (lowest median) or ``"size"`` (smallest checkpoint).

        Returns:
            The row, or None when no method is within the budget (keep float).
        """
        budget = self.comparison.budget
        return self.comparison.best(
            Budget(
                budget.max_accuracy_drop if max_accuracy_drop is None else max_accuracy_drop,
                objective or budget.objective,
                budget.max_perplexity_increase,
            )
        )

    @property
    def recommended(self) -> Row | None:
        """:meth:`best` with the report's budget and objective."""
        return self.comparison.recommended

    def recommendation(self) -> str:
        """One or two sentences: what to use and what it buys and costs."""
        return self.comparison.recommendation

    # --- outputs ------------------------------------------------------------------------------

    def to_markdown(self) -> str:
        """The recommendation and the table as Markdown."""
        return render_markdown(self.comparison)

    def to_dict(self) -> dict:
        """The ``results.json`` content (:meth:`quantlens.compare.Comparison.to_dict`)."""
        return self.comparison.to_dict()

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """All rows, settings and environment as strict JSON; written to ``path`` when given.

        Non-finite numbers (the float row's SQNR against itself is infinite) are written as
        ``null`` and listed by JSON Pointer under ``"non_finite"``
        (:mod:`quantlens.files.strict_json`); :meth:`from_json` restores them.
        """
        text = self.comparison.to_json()
        if path is not None:
            _write_text(path, text)
        return text

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """Raw numbers as CSV; written to ``path`` when given."""
        text = render_csv(self.rows)
        if path is not None:
            _write_text(path, text)
        return text

    def plot(self, directory: str | os.PathLike) -> list[Path]:
        """Write the PNG plots into ``directory`` (with ``sensitivity.png`` when the run had an
        analysis); returns their paths."""
        paths = write_plots(self.comparison, Path(directory))
        return paths + self.plot_analysis(directory)

    def plot_analysis(self, directory: str | os.PathLike) -> list[Path]:
        """Write the analysis PNGs into ``directory`` (``sensitivity.png``, and
        ``layer_sqnr.png`` / ``activation_ranges.png`` when the analysis has them); [] without
        analysis."""
        analysis = self.comparison.analysis
        return write_analysis(analysis, Path(directory)) if analysis is not None else []

    def to_html(
        self, path: str | os.PathLike, *, plot_dir: str | os.PathLike | None = None
    ) -> Path:
        """Write one self-contained HTML file (plots embedded; from ``plot_dir`` when
        :meth:`plot` already wrote them there)."""
        html = render_html(
            self.comparison, plot_dir=Path(plot_dir) if plot_dir is not None else None
        )
        _write_text(path, html)
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
                f"cannot write the report into {directory} ({exc.strerror or exc}); give a "
                "folder you can write to (a report that was there is unchanged)"
            ) from exc

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Report:
        """A report read back from :meth:`to_json` (files of older versions too)."""
        return cls(Comparison.from_dict(from_json_text(Path(path).read_text(encoding="utf-8"))))

    def __repr__(self) -> str:
        best = self.recommended
        return f"Report({len(self.rows)} rows, recommended={best.name if best else None!r})"

    def _repr_markdown_(self) -> str:  # notebooks
        return self.to_markdown()


def _analysis(value: Analysis | Mapping) -> Analysis:
    return value if isinstance(value, Analysis) else Analysis.from_dict(value)


def _write_text(path: str | os.PathLike, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
