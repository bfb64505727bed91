"""Entry point of the ``quantlens`` console script.

It sits outside the ``quantlens`` package on purpose: importing the package imports torch,
which takes seconds, and a Ctrl-C in those seconds would otherwise print a long traceback
from inside torch. Here the import runs under a handler, so an interrupt at any point of
start-up prints one line and exits 130, like an interrupt later on.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Import the CLI and run it (see :func:`quantlens.cli.main`); 130 on Ctrl-C."""
    try:
        from quantlens.cli import main as cli_main

        return cli_main(argv)
    except KeyboardInterrupt:
        print("quantlens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
