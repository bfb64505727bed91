"""The errors quantlens raises for user mistakes.

Every error a user can cause is a :class:`QuantlensError` subclass whose message says
what was wrong and how to fix it. The CLI prints the message on one line and exits with
``exit_code`` (2 for bad usage or input, 1 for a failure while running).
"""

from __future__ import annotations

import math


class QuantlensError(Exception):
    """Base class of every error quantlens raises on purpose."""

    exit_code = 2


class SchemeError(QuantlensError, ValueError):
    """A quantization scheme or its parameters are invalid."""


class InputError(QuantlensError, ValueError):
    """A tensor, data set or argument given to quantlens cannot be used as it is."""


class ConfigError(QuantlensError, ValueError):
    """A method config is invalid, or names layers the model does not have."""


class NothingToQuantizeError(QuantlensError):
    """The model has no layer that the chosen method can quantize."""


class SlowerThanFloatError(NothingToQuantizeError):
    """The method quantized nothing: int8 would be slower than float for every layer it
    handles (the float model is the faster one); ``ql.compare`` measures such a row as the
    float model."""


class BackendError(QuantlensError):
    """A quantized engine or an optional upstream library is not available here."""


class CheckpointError(QuantlensError):
    """A checkpoint directory is missing, incomplete, corrupt or of an unknown format."""


class UntrustedCodeError(CheckpointError):
    """Loading would call a ``module:function`` that a checkpoint, a recorded source or a
    model spec names, and the caller did not pass ``trust_code=True``."""


class UnknownNameError(QuantlensError, KeyError):
    """A model, data set, method or option name is not one quantlens knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(QuantlensError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra."""


class QuantizationFailedError(QuantlensError):
    """Quantizing or measuring a model failed while running (not a usage mistake)."""

    exit_code = 1


class DistributedError(QuantlensError):
    """A collective across the ranks of a process group failed or timed out (another rank
    failed or never reached it)."""

    exit_code = 1


def error_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (at most ``limit`` characters), for one-line
    errors; the exception's type name when the message is empty.

    Example:
        >>> error_line(ValueError("bad shape\\nmore detail"))
        'bad shape'
    """
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


# Messages quote at most SHOWN characters of a path or name: enough for the deep paths
# real projects (and temporary folders) have, short enough to keep an error on one line.
SHOWN = 200


def shorten(text: str, limit: int = SHOWN) -> str:
    """``text`` cut to ``limit`` characters (with ``...`` and the full length when cut),
    printable whatever its encoding.

    Example:
        >>> shorten("x" * 100, 10)
        'xxxxxxxxxx... (100 characters)'
    """
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_number(
    name: str, value, lo: float = -math.inf, hi: float = math.inf, *, integer: bool = False
):
    """``value`` after checking it is a finite number (an integer with ``integer=True``) in
    ``[lo, hi]``; None passes through. Raises :class:`InputError` naming ``name`` otherwise.

    Example:
        >>> check_number("reps", 5, 1, integer=True)
        5
    """
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok and not integer:
        ok = math.isfinite(value)
    if not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a finite number"
        span = (
            f"from {lo:g} to {hi:g}"
            if math.isfinite(lo) and math.isfinite(hi)
            else f">= {lo:g}"
            if math.isfinite(lo)
            else f"<= {hi:g}"
            if math.isfinite(hi)
            else ""
        )
        raise InputError(
            f"{name} must be {kind} {span}, got {value!r}".replace("  ", " ").replace(" ,", ",")
        )
    return value


def require(module: str, extra: str):
    """Import an optional dependency, or raise a MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed; install it with: pip install 'quantlens[{extra}]'"
        ) from exc
