"""``quantlens compare --runtime torch,onnxruntime``: ONNX Runtime rows from the command line;
an unknown runtime or a missing onnxruntime is one line and exit 2."""

from __future__ import annotations

import sys

import pytest
import torch
from helpers import strict_json

from quantlens.cli import main

pytest.importorskip("onnxruntime")


def _run(capsys, *argv):
    code = main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_runtime_flag_adds_onnxruntime_rows_to_every_output(capsys, tmp_path, digits_test):
    data = tmp_path / "digits_small.pt"
    torch.save((digits_test.inputs[:96], digits_test.labels[:96]), data)
    out = tmp_path / "report"
    code, stdout, err = _run(
        capsys,
        "digits-cnn",
        "--data",
        str(data),
        "--methods",
        "w8",
        "--runtime",
        "torch,onnxruntime",
        "--reps",
        "1",
        "--no-memory",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, err
    printed = strict_json(stdout)
    assert [(r["name"], r.get("runtime", "torch")) for r in printed["rows"]] == [
        ("float", "torch"),
        ("float (onnxruntime)", "onnxruntime"),
        ("w8", "torch"),
        ("w8 (onnxruntime)", "onnxruntime"),
    ]
    assert all(r["status"] == "ok" and r["disk_bytes"] > 0 for r in printed["rows"])
    assert "--runtime torch,onnxruntime" in printed["command"]
    assert printed["settings"]["runtimes"] == ["torch", "onnxruntime"]
    assert "[4/4] w8 (onnxruntime)" in err
    assert "<td>w8 (onnxruntime)</td>" in (out / "report.html").read_text(encoding="utf-8")
    assert "w8 (onnxruntime)" in (out / "report.md").read_text(encoding="utf-8")


def test_an_unknown_runtime_is_one_line_and_exit_2(capsys, tmp_path):
    code, _, err = _run(capsys, "--runtime", "torch,tensorrt", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'tensorrt'" in err and "onnxruntime" in err
    assert not (tmp_path / "o").exists()


def test_missing_onnxruntime_names_the_extra(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, _, err = _run(capsys, "--runtime", "torch,onnxruntime", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "pip install 'quantlens[onnx]'" in err
    assert not (tmp_path / "o").exists()
