"""The comparison as Markdown: the recommendation, the table, failures and the command.

Example:
    >>> Path("report.md").write_text(render_markdown(comparison))
"""

from __future__ import annotations

from collections.abc import Sequence

from quantlens.compare.results import Comparison, Row
from quantlens.report.tables import table


def table_markdown(rows: Sequence[Row], task: str | None = None) -> str:
    """The table (:func:`quantlens.report.tables.table`) as GitHub-flavoured Markdown.

    Args:
        rows: the comparison's rows, float first.
        task: the comparison's task (names the quality column).

    Returns:
        The Markdown table, without a final newline.
    """
    headers, lines = table(rows, task)

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(esc(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def render_markdown(comparison: Comparison) -> str:
    """The whole ``report.md``: a title, the recommendation in bold, the table, a note when
    the run was interrupted, the failed rows and the command.

    Args:
        comparison: what to render.

    Returns:
        The Markdown text, ending in a newline.
    """
    lines = [
        "# quantlens comparison",
        "",
        f"**{comparison.recommendation}**",
        "",
        table_markdown(comparison.rows, comparison.task),
    ]
    if comparison.settings.float_note:
        lines += ["", f"_Note: {comparison.settings.float_note}._"]
    if comparison.settings.processes:
        lines += ["", f"Rows measured by {comparison.settings.processes}."]
    if comparison.interrupted:
        lines += ["", "_Interrupted: only the rows above were measured._"]
    failed = [r for r in comparison.rows if not r.ok]
    if failed:
        lines += ["", "Failed:"] + [f"- {r.name}: {r.error}" for r in failed]
    if comparison.command:
        lines += ["", f"Command: `{comparison.command}`"]
    return "\n".join(lines) + "\n"


__all__ = ["render_markdown", "table_markdown"]
