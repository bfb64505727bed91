"""Build the compiled dynamic int8 op: ``python -m quantlens.nn.build_kernels [--out DIR]``.

Compiles ``nn/csrc/dynamic_int8.cpp`` with the C++ compiler (``$CXX``, default ``g++``)
against the installed torch's headers and libraries -- no ninja, no pybind -- into
``nn/_compiled/`` (or ``--out``), under the name :func:`~quantlens.nn.kernels.compiled.
library_name` gives for this torch and CPU. ``scripts/setup.sh`` runs it; where it fails,
quantlens runs the pure-PyTorch paths. About 10 s.

Example:
    >>> path = build()                       # nn/_compiled/dynamic_int8-torch...so
    >>> path = build(Path("/tmp/ql"))        # elsewhere
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils import cpp_extension

from quantlens.errors import BackendError
from quantlens.nn.kernels.compiled import BUILD_DIR, COMPILE_FLAGS, SOURCE, library_name


def compile_command(source: Path, output: Path, compiler: str) -> list[str]:
    """The compiler command line that builds ``source`` into ``output``.

    Example:
        >>> compile_command(SOURCE, Path("x.so"), "g++")[:2]
        ['g++', '-O3']
    """
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [f"-I{p}" for p in cpp_extension.include_paths()]
    libdir = cpp_extension.library_paths()[0]
    return [
        compiler,
        *COMPILE_FLAGS,
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        *includes,
        str(source),
        "-o",
        str(output),
        f"-L{libdir}",
        "-ltorch_cpu",
        "-lc10",
        f"-Wl,-rpath,{libdir}",
    ]


def build(out_dir: Path | None = None, source: Path = SOURCE) -> Path:
    """Compile ``source`` into ``out_dir`` (default: the package's ``nn/_compiled``).

    The library is written under a temporary name and renamed into place, so concurrent
    builds and loaders never see half a file.

    Args:
        out_dir: the folder to write into (created).
        source: the C++ source.

    Returns:
        The library's path.

    Raises:
        BackendError: no C++ compiler, or the compile failed (the message ends with the
            compiler's last error line).
    """
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise BackendError(
            f"no C++ compiler {compiler!r} found; install g++ (or set CXX) to build the "
            "compiled int8 kernel"
        )
    out_dir = Path(out_dir) if out_dir is not None else BUILD_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / library_name(source)
    fd, tmp_name = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        proc = subprocess.run(
            compile_command(source, tmp, compiler), check=False, capture_output=True, text=True
        )
        if proc.returncode != 0:
            errors = [ln for ln in proc.stderr.splitlines() if "error" in ln] or [""]
            raise BackendError(
                f"compiling {source.name} failed ({compiler} exit {proc.returncode}): "
                f"{errors[0].strip()[:200]}"
            )
        tmp.chmod(0o755)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """The command: build, print one line, exit 0 (or 1 when the build fails)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder (default: nn/_compiled)")
    args = parser.parse_args(argv)
    try:
        path = build(args.out)
    except BackendError as exc:
        print(f"quantlens: {exc}; the PyTorch paths will be used", file=sys.stderr)
        return 1
    print(f"built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
