"""Progress bars for anything that runs longer than a couple of seconds (rich)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled(enabled: bool | None = None) -> bool:
    """Show progress when asked, or by default when stderr is a terminal."""
    return sys.stderr.isatty() if enabled is None else enabled


def track(
    iterable: Iterable[T],
    description: str,
    *,
    total: int | None = None,
    enabled: bool | None = None,
) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (or silently when not enabled).

    Args:
        iterable: what to iterate.
        description: the bar's label, e.g. ``"calibrating"``.
        total: number of items, when ``len(iterable)`` is not available.
        enabled: force the bar on or off; default on when stderr is a terminal.
    """
    if not progress_enabled(enabled):
        yield from iterable
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)
