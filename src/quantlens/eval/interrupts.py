"""Ctrl-C during a comparison, wherever it lands.

A Ctrl-C raises KeyboardInterrupt in whatever code runs at that moment, and that code is
often not ours: torch imports sympy and torch._dynamo lazily during graph capture, and an
interrupt there can come back as another error (the KeyboardInterrupt in its
``__cause__``/``__context__``) or be swallowed by a bare ``except:`` in a dependency,
leaving only a half-imported module that fails later. Either way the user asked to stop,
so the comparison must stop, not record a "failed" row and go on.

- :func:`interrupted_by` finds a KeyboardInterrupt anywhere in an exception's chain, and
  :func:`raise_if_interrupted` turns such an exception back into a KeyboardInterrupt;
- :class:`InterruptWatch` notes every SIGINT while a comparison runs (then lets Python
  raise KeyboardInterrupt as usual), so a swallowed one is still seen.

Example:
    >>> with InterruptWatch() as watch:
    ...     try:
    ...         run_one()
    ...     except Exception as exc:
    ...         if watch.requested or interrupted_by(exc):
    ...             raise KeyboardInterrupt from exc
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


def interrupted_by(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is anywhere in ``exc``'s chain (``__cause__`` and
    ``__context__``, followed both ways)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        todo += [e.__cause__, e.__context__]
    return False


def raise_if_interrupted(exc: BaseException) -> None:
    """Raise KeyboardInterrupt (from ``exc``) when ``exc`` wraps a Ctrl-C (:func:`interrupted_by`);
    else return, and the caller handles ``exc`` as the error it is.

    Example:
        >>> try:
        ...     draw_diagnostic()
        ... except Exception as exc:
        ...     raise_if_interrupted(exc)
        ...     notes.append(f"not drawn: {exc}")
    """
    if interrupted_by(exc):
        raise KeyboardInterrupt from exc


class InterruptWatch:
    """Context manager that records SIGINTs (``requested``) and then hands each to the
    handler that was installed before (Python's: raise KeyboardInterrupt).

    It only installs itself in the main thread and when SIGINT has a Python handler;
    elsewhere ``requested`` stays False and nothing changes. The previous handler is put
    back on exit.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Callable[[int, FrameType | None], Any] | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self._previous is not None:
            self._previous(signum, frame)

    def __enter__(self) -> InterruptWatch:  # noqa: PYI034 - typing.Self needs Python 3.11
        if threading.current_thread() is threading.main_thread():
            current = signal.getsignal(signal.SIGINT)
            if callable(current):
                self._previous = current
                signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


__all__ = ["InterruptWatch", "interrupted_by", "raise_if_interrupted"]
