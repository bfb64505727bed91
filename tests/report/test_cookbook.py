"""Every ``python`` and ``console`` block of docs/cookbook.md runs, in order, in one namespace
(``bash`` blocks, the install commands, are not run). ``console`` lines ``$ quantlens ...``
go through ``quantlens.cli.main`` and must exit 0."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

import quantlens
from quantlens.cli import main

COOKBOOK = Path(__file__).resolve().parents[2] / "docs" / "cookbook.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(text: str) -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in FENCE.findall(text) if lang in ("python", "console")]


def test_every_ql_name_the_cookbook_uses_is_exported():
    """The snippets run against the real package (no names filled in), so a missing export fails."""
    code = "\n".join(body for lang, body in blocks(COOKBOOK.read_text()) if lang == "python")
    used = set(re.findall(r"\bql\.([A-Za-z_]\w*)", code))
    assert {"quantize", "compare", "register_custom_module", "WeightOnly", "analysis"} <= used
    assert not sorted(used - set(quantlens.__all__)), (
        "used in docs/cookbook.md but not in quantlens.__all__"
    )
    assert (
        "ql.register_custom_module(Clip, ObservedClip, QuantizedClip)" in code
    )  # an executed custom-module hook


@pytest.mark.slow  # ~25 s on a quiet machine: it loads MiniLM and runs every method once
def test_every_cookbook_snippet_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = blocks(COOKBOOK.read_text())
    assert len(found) >= 20
    namespace: dict = {"__name__": "cookbook"}
    threads = torch.get_num_threads()
    try:
        for i, (lang, body) in enumerate(found):
            where = f"cookbook block {i} ({lang}): {body.strip().splitlines()[0]}"
            if lang == "python":
                try:
                    code = compile(body, f"<{where}>", "exec")
                    exec(code, namespace)  # noqa: S102 - our own docs
                except Exception as exc:
                    raise AssertionError(f"{where} raised {type(exc).__name__}: {exc}") from exc
            else:
                for line in body.splitlines():
                    if line.startswith("$ quantlens "):
                        code = main(shlex.split(line)[2:])
                        assert code == 0, f"{where}: {line} exited {code}"
    finally:
        torch.set_num_threads(threads)
