"""The compiled dynamic int8 op (``src/quantlens/nn/csrc/dynamic_int8.cpp``): where the shared
library lives, and loading it lazily, once per process.

The library is built for one torch version and one CPU (``-march=native``): its file name
carries a stamp of both and of the source, so a library built against another torch, on
another machine or from an older source is never loaded -- :func:`library_name` names the
one this process can use, and ``python -m quantlens.nn.build_kernels`` builds it
(``scripts/setup.sh`` does). Where it is missing or fails to load, one line is logged (once
per process) naming that command, and the pure-PyTorch paths run.

Example:
    >>> ops = default_ops()
    >>> if ops.load():
    ...     y = ops.dynamic_linear_int8(x2d, wq.t(), ws, bias, True)
"""

from __future__ import annotations

import hashlib
import logging
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

_NN = Path(__file__).resolve().parent.parent
SOURCE = _NN / "csrc" / "dynamic_int8.cpp"
BUILD_DIR = _NN / "_compiled"
BUILD_COMMAND = "python -m quantlens.nn.build_kernels"
# -fopenmp: at::parallel_for is inline OpenMP code; the library then needs libgomp.so.1, which
# resolves to the one torch has already loaded (one thread pool, torch.set_num_threads rules).
# -ffp-contract=off: the activation codes must round exactly as ATen's separate passes do
# (the one fused multiply-add ATen does, addcmul, is written out in the source).
COMPILE_FLAGS: tuple[str, ...] = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC")
COMPILE_FLAGS += ("-fopenmp", "-ffp-contract=off", "-w")

_log = logging.getLogger(__name__)


def cpu_stamp() -> str:
    """What identifies this CPU's instruction set: the ``flags`` line of /proc/cpuinfo (the
    library is compiled with ``-march=native``), else the platform's processor string.

    Example:
        >>> len(cpu_stamp()) > 0
        True
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def library_name(source: Path = SOURCE) -> str:
    """The file name of the library built from ``source`` for this torch and this CPU.

    Returns:
        ``dynamic_int8-torch<version>-<stamp>.so``; the stamp hashes the torch version, the
        CPU flags, the machine, the compiler flags and the source text.

    Example:
        >>> library_name().startswith("dynamic_int8-torch")
        True
    """
    digest = hashlib.sha256()
    for part in (torch.__version__, platform.machine(), cpu_stamp(), *COMPILE_FLAGS):
        digest.update(part.encode() + b"\0")
    digest.update(source.read_bytes())
    version = torch.__version__.replace("+", "_")
    return f"{source.stem}-torch{version}-{digest.hexdigest()[:12]}.so"


class CompiledOps:
    """The compiled op library at ``path``, loaded on the first :meth:`load`.

    Args:
        path: the shared library (None: ``BUILD_DIR / library_name()``, resolved on first use).

    Example:
        >>> CompiledOps(Path("/nonexistent.so")).load()  # logs one line, once
        False
    """

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._loaded: bool | None = None
        self.reason: str | None = None  # why it is not loaded, once tried
        self.dynamic_linear_int8: Callable[..., torch.Tensor] = _unloaded
        self.quantize_int8: Callable[..., Any] = _unloaded

    @property
    def path(self) -> Path:
        """Where the library is looked for."""
        if self._path is None:
            self._path = BUILD_DIR / library_name()
        return self._path

    def load(self) -> bool:
        """Load the library once; True if its ops are available. The first failure logs one
        warning naming the build command."""
        if self._loaded is None:
            self._loaded = self._try_load()
            if not self._loaded:
                _log.warning(
                    "quantlens: compiled int8 kernel unavailable (%s); using the PyTorch path "
                    "-- build it with `%s`",
                    self.reason,
                    BUILD_COMMAND,
                )
        return self._loaded

    def _try_load(self) -> bool:
        try:
            path = self.path
        except OSError as exc:  # the source is missing (a broken install)
            self.reason = f"cannot read {SOURCE.name}: {exc}"
            return False
        if not path.is_file():
            self.reason = f"{path.name} is not built for this torch and CPU"
            return False
        try:
            torch.ops.load_library(str(path))
            ops = torch.ops.quantlens
            self.dynamic_linear_int8 = ops.dynamic_linear_int8.default
            self.quantize_int8 = ops.quantize_int8.default
        except (OSError, RuntimeError, AttributeError) as exc:
            self.reason = f"{path.name} failed to load: {str(exc).splitlines()[0]}"
            return False
        return True


def _unloaded(*args: Any) -> Any:
    raise RuntimeError("the compiled quantlens ops are not loaded; call load() first")


_DEFAULT = CompiledOps()


def default_ops() -> CompiledOps:
    """The process-wide :class:`CompiledOps` for the package's build folder."""
    return _DEFAULT


def set_default_ops(ops: CompiledOps) -> CompiledOps:
    """Replace the process-wide :class:`CompiledOps` (tests point it at a missing file);
    returns the previous one. Layers that already chose a path keep it until their cache
    is cleared."""
    global _DEFAULT
    previous, _DEFAULT = _DEFAULT, ops
    return previous


__all__ = [
    "BUILD_COMMAND",
    "BUILD_DIR",
    "COMPILE_FLAGS",
    "SOURCE",
    "CompiledOps",
    "cpu_stamp",
    "default_ops",
    "library_name",
    "set_default_ops",
]
