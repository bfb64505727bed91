"""The tree passes ``ruff check`` (with the 100-column line length) and ``ruff format --check``.

Runs the ruff installed beside this Python (the one ``scripts/setup.sh`` installs with the dev
extra); skipped only where ruff is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["src", "tests", "benchmarks", "scripts"]


def _ruff() -> str | None:
    """The ruff executable next to ``sys.executable``, else the one the ruff package ships."""
    here = Path(sys.executable).parent / ("ruff.exe" if sys.platform == "win32" else "ruff")
    if here.is_file():
        return str(here)
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        return shutil.which("ruff")
    try:
        return find_ruff_bin()
    except FileNotFoundError:
        return None


def _run(*args: str) -> subprocess.CompletedProcess:
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install 'quantlens[dev]')")
    return subprocess.run(
        [ruff, *args, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_ruff_check_passes():
    result = _run("check", "--no-cache", "--output-format", "concise")
    assert result.returncode == 0, f"ruff check failed:\n{result.stdout}{result.stderr}"


def test_ruff_format_is_applied():
    result = _run("format", "--check", "--no-cache", "--diff")
    assert result.returncode == 0, (
        f"ruff format would change these files (run: ruff format {' '.join(PATHS)}):\n"
        f"{result.stdout}{result.stderr}"
    )


def test_line_length_rule_is_enforced():
    """E501 is selected, so ``ruff check`` above also fails on a line over 100 columns."""
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install 'quantlens[dev]')")
    long_line = f"x = {'1 + ' * 30}1\n"  # 125 columns
    result = subprocess.run(
        [ruff, "check", "--no-cache", "--stdin-filename", "src/quantlens/_probe.py", "-"],
        cwd=ROOT,
        input=long_line,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "E501" in result.stdout, result.stdout + result.stderr
