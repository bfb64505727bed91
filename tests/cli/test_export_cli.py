"""``quantlens export`` through ``quantlens.cli.main``: --check prints the agreement and
exits 0; one-line errors with exit 2 for bad input; exit 1 under the thresholds."""

from __future__ import annotations

import sys

import pytest

from quantlens.cli import main

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_static_digits_cnn_exports_and_checks(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    code = main(
        [
            "export",
            "digits-cnn",
            "--method",
            "static",
            "--format",
            "onnx",
            "-o",
            str(out),
            "--check",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert out.is_file()
    assert (
        "max abs error" in text
        and "cosine" in text
        and "argmax agreement" in text
        and "latency" in text
    )


def test_check_below_the_threshold_exits_1(tmp_path, capsys):
    code = main(
        [
            "export",
            "digits-cnn",
            "--method",
            "w2",
            "--format",
            "onnx",
            "-o",
            str(tmp_path / "m.onnx"),
            "--check",
            "--min-cosine",
            "1.01",
        ]
    )
    assert code == 1
    assert "check failed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["export", "digits-cnn", "--method", "static", "-o", "{tmp}/missing/m.onnx"],
            "does not exist",
        ),
        (
            ["export", "digits-cnn", "--method", "static", "--format", "tflite", "-o", "{tmp}/m.x"],
            "unknown export format",
        ),
        (["export", "{tmp}/broken", "--format", "onnx", "-o", "{tmp}/m.onnx"], "broken"),
        (["export", "digits-cnn", "--format", "onnx", "-o", "{tmp}/m.onnx"], "--method"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "quantlens.json").write_text("{}")
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_missing_onnxruntime_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code = main(
        [
            "export",
            "digits-cnn",
            "--method",
            "dynamic",
            "--format",
            "onnx",
            "-o",
            str(tmp_path / "m.onnx"),
            "--check",
        ]
    )
    err = capsys.readouterr().err
    assert (
        code == 2 and "pip install 'quantlens[onnx]'" in err and len(err.strip().splitlines()) == 1
    )
