"""Entry point of the ``quantlens`` console script.

It sits outside the ``quantlens`` package on purpose: importing the package imports torch,
which takes seconds, and a Ctrl-C in those seconds would otherwise print a long traceback
from inside torch. Here the import runs under a handler, so an interrupt at any point of
start-up prints one line and exits 130, like an interrupt later on.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Import the CLI and run it (see :func:`quantlens.cli.main`); 130 on Ctrl-C, 1 with one
    line when a dependency (torch) cannot be imported."""
    try:
        from quantlens.cli import main as cli_main
    except KeyboardInterrupt:
        print("quantlens: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:  # a broken or missing torch: one line, not torch's traceback
        if "--debug" in (sys.argv[1:] if argv is None else argv):
            raise
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        print(
            f"quantlens: error: cannot import {exc.name or 'a dependency'} ({line}); reinstall it "
            "(bash scripts/setup.sh, or pip install quantlens); --debug shows the traceback",
            file=sys.stderr,
        )
        return 1
    try:
        return cli_main(argv)
    except KeyboardInterrupt:
        print("quantlens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
