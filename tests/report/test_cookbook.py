"""Every ``python`` and ``console`` block of docs/cookbook.md runs, in order, in one namespace
(``bash`` blocks, the install commands, are not run). ``console`` lines ``$ quantlens ...``
go through ``quantlens.cli.main`` and must exit 0."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

import quantlens as ql
from quantlens.cli import main

COOKBOOK = Path(__file__).resolve().parents[2] / "docs" / "cookbook.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(text: str) -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in FENCE.findall(text) if lang in ("python", "console")]


def _public_names() -> None:
    """The cookbook uses the public names; fill any the package does not export yet."""
    from quantlens import report, testing
    from quantlens.methods.dynamic import Dynamic
    from quantlens.methods.weight_only import WeightOnly

    for name, value in {"Dynamic": Dynamic, "WeightOnly": WeightOnly, "compare": report.compare,
                        "Report": report.Report, "testing": testing}.items():
        if not hasattr(ql, name):
            setattr(ql, name, value)


@pytest.mark.slow  # ~25 s on a quiet machine: it loads MiniLM and runs every method once
def test_every_cookbook_snippet_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _public_names()
    found = blocks(COOKBOOK.read_text())
    assert len(found) >= 18
    namespace: dict = {"__name__": "cookbook"}
    threads = torch.get_num_threads()
    try:
        for i, (lang, body) in enumerate(found):
            where = f"cookbook block {i} ({lang}): {body.strip().splitlines()[0]}"
            if lang == "python":
                try:
                    exec(compile(body, f"<{where}>", "exec"), namespace)  # noqa: S102 - our own docs
                except Exception as exc:
                    raise AssertionError(f"{where} raised {type(exc).__name__}: {exc}") from exc
            else:
                for line in body.splitlines():
                    if line.startswith("$ quantlens "):
                        code = main(shlex.split(line)[2:])
                        assert code == 0, f"{where}: {line} exited {code}"
    finally:
        torch.set_num_threads(threads)
