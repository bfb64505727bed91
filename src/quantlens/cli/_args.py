"""Option parsing shared by every subcommand: a parser whose usage errors are one line,
range-checked number types, and reading what a user names (a JSON file, a MODEL, DATA).

Example:
    >>> parser = ArgumentParser(prog="quantlens demo")
    >>> _ = parser.add_argument("--threads", type=int_in(1, 1024))
    >>> parser.parse_args(["--threads", "4"]).threads
    4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from quantlens.errors import ConfigError, InputError, error_line, shorten
from quantlens.files import path_kind
from quantlens.sources import (
    LoadedData,
    ModelSource,
    is_factory_spec,
    load_data,
    require_tensors,
    resolve_model,
)


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose usage errors print one line (``PROG: error:
    MESSAGE; see PROG --help``) and exit 2, instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {shorten(message, 300)}; see {self.prog} --help\n")


def check_out_folder(out: Path, flag: str) -> None:
    """Fail now, before anything slow, if ``out`` cannot become the folder a command writes:
    it is a file, a link to nowhere, under a file, or in a folder we cannot write to.

    Raises:
        InputError: naming ``flag``, the path and what to do.
    """
    name = shorten(out)
    if out.is_symlink() and path_kind(out) is None:
        raise InputError(
            f"{flag} {name} is a link to {shorten(os.readlink(out))}, which does not exist; "
            "create that folder or remove the link"
        )
    kind = path_kind(out)
    if kind not in (None, "dir"):
        raise InputError(f"{flag} {name} is a file; give a folder")
    parent = out if kind == "dir" else out.absolute().parent
    while path_kind(parent) is None and parent != parent.parent:
        parent = parent.parent
    if path_kind(parent) != "dir":
        raise InputError(
            f"{flag} {name}: {shorten(parent)} is not a folder, so the folder cannot be created "
            "there; give a folder path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(
            f"{flag} {name}: no permission to write in {shorten(parent)}; give a folder you can "
            "write to"
        )


def int_in(lo: int, hi: int | None = None):
    """An argparse ``type`` for an integer in ``[lo, hi]`` (no upper bound when ``hi`` is None).

    Example:
        >>> int_in(1, 8)("4")
        4
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer, got {shorten(text, 40)!r}"
            ) from None
        if value < lo or (hi is not None and value > hi):
            bound = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def float_in(lo: float = -math.inf, hi: float = math.inf):
    """An argparse ``type`` for a finite number in ``[lo, hi]`` (NaN and Inf refused).

    Example:
        >>> float_in(0, 100)("1.5")
        1.5
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number, got {shorten(text, 40)!r}"
            ) from None
        if not math.isfinite(value) or not lo <= value <= hi:
            span = (
                f"from {lo:g} to {hi:g}"
                if math.isfinite(lo) and math.isfinite(hi)
                else (
                    f">= {lo:g}"
                    if math.isfinite(lo)
                    else f"<= {hi:g}"
                    if math.isfinite(hi)
                    else "finite"
                )
            )
            raise argparse.ArgumentTypeError(
                f"must be a finite number {span}, got {shorten(text, 40)}"
            )
        return value

    parse.__name__ = "number"
    return parse


def max_threads() -> int:
    """The largest ``--threads`` accepted: 4x the CPUs here, at least 64 (OpenMP crashes the
    process when asked for tens of thousands)."""
    return max(64, 4 * (os.cpu_count() or 1))


def read_json(path: Path | str, what: str = "config") -> object:
    """The JSON value in the file ``path``, or one-line errors for every way reading fails.

    Raises:
        InputError: the file is missing, unreadable or not UTF-8.
        ConfigError: it is not valid JSON, or nested too deeply to read.
    """
    name = shorten(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} file {name} does not exist") from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} file {name} is not UTF-8 text ({error_line(exc, 120)}); save it as UTF-8 JSON"
        ) from None
    except OSError as exc:
        raise InputError(
            f"cannot read the {what} file {name}: {exc.strerror or error_line(exc)}"
        ) from None
    limit = sys.getrecursionlimit()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{name} is not valid JSON ({exc}); write it with config.to_dict()"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"{name} is nested too deeply to be a {what} (over {limit} levels); "
            "write it with config.to_dict()"
        ) from None


def add_trust_code(parser: argparse.ArgumentParser) -> None:
    """The ``--trust-code`` flag of every command that takes a MODEL."""
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="let a checkpoint given as MODEL rebuild its model by calling the module:factory "
        "it records",
    )


def model_arg(spec: str, *, trust_code: bool = False) -> ModelSource:
    """The model a MODEL argument names (:func:`quantlens.sources.resolve_model`). A
    ``module:factory`` typed on the command line runs: the user named it; ``trust_code``
    (``--trust-code``) is for the factory a checkpoint records.

    Example:
        >>> model_arg("digits-cnn").zoo
        'digits-cnn'
    """
    return resolve_model(spec, trust_code=trust_code or is_factory_spec(spec))


def data_arg(spec: str) -> LoadedData:
    """The data a DATA argument names (:func:`quantlens.sources.load_data`): tensors, since
    the command line has no tokenizer for a text file.

    Example:
        >>> data_arg("digits").calib is not None
        True
    """
    return require_tensors(load_data(spec), spec)
