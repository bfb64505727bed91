"""The ``quantlens`` command: parses arguments, calls the public API, prints.

Each subcommand is a module in this package with ``register(subparsers)`` that adds its
parser and sets ``func=run`` (``run(args) -> int``); modules are discovered, so adding a
command is adding a file.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import pkgutil
import sys
import warnings

from quantlens.cli._args import ArgumentParser, shorten
from quantlens.errors import QuantlensError, error_line


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="quantlens",
        description="Quantize PyTorch models and measure what it bought and what it cost.",
    )
    parser.add_argument("--verbose", action="store_true", help="show warnings and full tracebacks")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    for command in sub.choices.values():  # --debug after the command name works too
        command.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show the full traceback of an error",
        )
    return parser


# OSError numbers that mean the user named a path that cannot be used (exit 2); any other
# OSError (disk full, I/O error) is a failure while running (exit 1).
_BAD_PATH = {
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
    errno.EROFS,
    errno.ELOOP,
    errno.ENOTEMPTY,
}


def _os_error_line(exc: OSError) -> tuple[str, int]:
    """One line for an OSError (what failed, on which path) and the exit code."""
    where = f": {shorten(exc.filename)}" if exc.filename is not None else ""
    fix = "; check the path and its permissions" if exc.errno in _BAD_PATH else ""
    return f"{exc.strerror or error_line(exc)}{where}{fix}", 2 if exc.errno in _BAD_PATH else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``quantlens`` command; returns the exit code: 0 on success, 2 for
    bad usage or input, 1 for a failure while running, 130 on Ctrl-C. Errors are one line on
    stderr; ``--debug`` (or ``--verbose``) shows the traceback instead."""
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 path must not crash a print
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, one line printed)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    if not args.verbose:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    prefix = f"quantlens {args.command}: error:"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"quantlens {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose or args.debug:
            raise
        if isinstance(exc, QuantlensError):
            line, code = str(exc), exc.exit_code
        elif isinstance(exc, OSError):
            line, code = _os_error_line(exc)
        elif isinstance(exc, MemoryError):
            line, code = "out of memory; use a smaller model, less data or fewer batches", 1
        else:
            line = (
                f"internal error ({type(exc).__name__}: {error_line(exc, 200)}); rerun with "
                "--debug for the traceback"
            )
            code = 1
        print(f"{prefix} {' '.join(line.split())}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
