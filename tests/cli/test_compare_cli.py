"""``quantlens compare``: bad input gives one line and exit 2; a small real run writes the
report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import interrupter, strict_json

from quantlens import zoo
from quantlens.cli import main
from quantlens.compare import presets


def _run(capsys, *argv):
    code = main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_unknown_model_lists_the_zoo(capsys, tmp_path):
    code, _, err = _run(capsys, "no-such-model", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "digits-cnn" in err and "no-such-model" in err


def test_unknown_data_lists_the_zoo_sets(capsys, tmp_path):
    code, _, err = _run(capsys, "--data", "nope", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "digits" in err and "sentences" in err


def test_unknown_method_lists_the_valid_ones(capsys, tmp_path):
    code, _, err = _run(capsys, "--methods", "static,int3", "--out", str(tmp_path / "o"))
    assert code == 2 and "'int3'" in err and "dynamic" in err and "w4" in err
    assert not (tmp_path / "o").exists()


def test_data_of_the_wrong_shape_names_both_shapes(capsys, tmp_path):
    path = tmp_path / "wrong.npz"
    np.savez(path, inputs=np.zeros((8, 3, 5, 5), np.float32), labels=np.zeros(8, np.int64))
    code, _, err = _run(
        capsys,
        "digits-cnn",
        "--data",
        str(path),
        "--methods",
        "static",
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "(8, 3, 5, 5)" in err and "(N, 1, H, W)" in err
    assert not (tmp_path / "o").exists()  # checked before the output folder is created


@pytest.mark.parametrize("under", ["a-file", "/dev/null"])
def test_out_below_a_file_is_a_one_line_error(capsys, tmp_path, under):
    parent = tmp_path / under if under == "a-file" else Path(under)
    if under == "a-file":
        parent.write_text("not a folder")
    code, _, err = _run(capsys, "--out", str(parent / "x"), "--methods", "static")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"--out {parent / 'x'}" in err and "not a folder" in err


def test_an_image_folder_without_torchvision_says_which_extra(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision raises ImportError
    (tmp_path / "images" / "cat").mkdir(parents=True)
    code, _, err = _run(
        capsys, "digits-cnn", "--data", str(tmp_path / "images"), "--out", str(tmp_path / "o")
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "torchvision" in err and "pip install 'quantlens[vision]'" in err
    assert not (tmp_path / "o").exists()


def test_a_bad_grid_is_a_one_line_error(capsys, tmp_path):
    for grid, expected in (
        (["bits=8,4"], "Static has no setting 'bits'"),
        (["observer"], "key=value"),
        (["backend=arm"], "unknown backend 'arm'"),
    ):
        code, _, err = _run(
            capsys, "--sweep", "static", "--grid", *grid, "--out", str(tmp_path / "o")
        )
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "o").exists()


def test_existing_output_folder_needs_force(capsys, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, _, err = _run(capsys, "--out", str(out))
    assert code == 2 and "--force" in err
    assert (out / "mine.txt").read_text() == "keep me"


def test_pt_files_are_read_without_pickle(digits_test, tmp_path):
    from quantlens.sources import load_data

    test = digits_test
    torch.save({"inputs": test.inputs[:10], "labels": test.labels[:10]}, tmp_path / "d.pt")
    loaded = load_data(str(tmp_path / "d.pt"))
    x, y = loaded.test
    assert x.shape == (10, 1, 8, 8) and y.dtype == torch.int64


@pytest.fixture(scope="module")
def small_data(digits_test, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits_small.pt"
    torch.save((digits_test.inputs[:96], digits_test.labels[:96]), path)
    return path


@pytest.mark.slow
def test_a_run_writes_every_output(capsys, tmp_path, small_data):
    out = tmp_path / "report"
    code, stdout, _ = _run(
        capsys,
        "digits-cnn",
        "--data",
        str(small_data),
        "--calib-data",
        str(small_data),
        "--methods",
        "static",
        "--reps",
        "2",
        "--no-memory",
        "--out",
        str(out),
    )
    assert code == 0, stdout
    for name in (
        "report.html",
        "report.md",
        "results.json",
        "results.csv",
        "accuracy_vs_latency.png",
        "size.png",
    ):
        assert (out / name).is_file(), name
    data = strict_json((out / "results.json").read_text())  # valid JSON: no Infinity (float's SQNR)
    assert [r["name"] for r in data["rows"]] == ["float", "static"]
    assert data["rows"][0]["sqnr_db"] is None and data["non_finite"]["/rows/0/sqnr_db"] == "inf"
    assert data["command"].startswith("quantlens compare digits-cnn --data")
    # which sentence depends on the timings of this (shared) machine; each names the outcome
    assert "static" in stdout and any(
        s in stdout for s in ("Use static", "Keep the float", "No method is faster")
    )
    code, stdout, _ = _run(
        capsys,
        "digits-cnn",
        "--data",
        str(small_data),
        "--methods",
        "static",
        "--reps",
        "1",
        "--no-memory",
        "--out",
        str(out),
        "--force",
        "--json",
    )
    assert code == 0 and strict_json(stdout)["rows"][1]["name"] == "static"


@pytest.mark.slow
def test_sweep_grid_from_the_command_line_varies_the_backend(capsys, tmp_path, small_data):
    out = tmp_path / "sweep"
    code, _, err = _run(
        capsys,
        "digits-cnn",
        "--data",
        str(small_data),
        "--sweep",
        "static",
        "--grid",
        "observer=minmax",
        "per_channel=true,false",
        "backend=x86,qnnpack",
        "--reps",
        "1",
        "--no-memory",
        "--out",
        str(out),
    )
    assert code == 0, err
    data = strict_json((out / "results.json").read_text())
    assert [r["name"] for r in data["rows"]] == [
        "float",
        "observer=minmax,per_channel=True,backend=x86",
        "observer=minmax,per_channel=True,backend=qnnpack",
        "observer=minmax,per_channel=False,backend=x86",
        "observer=minmax,per_channel=False,backend=qnnpack",
    ]
    assert [r["config"]["backend"] for r in data["rows"][1:]] == [
        "x86",
        "qnnpack",
        "x86",
        "qnnpack",
    ]
    assert all(r["status"] == "ok" and r["accuracy"] > 90 for r in data["rows"]), [
        r["error"] for r in data["rows"]
    ]
    assert "--grid observer=minmax per_channel=true,false backend=x86,qnnpack" in data["command"]


def test_a_failing_method_exits_1_but_keeps_the_report(capsys, tmp_path, small_data, monkeypatch):
    monkeypatch.setitem(presets.PRESETS, "broken", presets.Preset("static", {"skip": ("zzz",)}))
    out = tmp_path / "r"
    code, _, err = _run(
        capsys,
        "digits-cnn",
        "--data",
        str(small_data),
        "--methods",
        "broken",
        "--reps",
        "1",
        "--no-memory",
        "--out",
        str(out),
    )
    assert code == 1 and "broken" in err and "zzz" in err
    assert (out / "report.html").is_file()


def _run_interrupted(
    capsys, monkeypatch, data, out, *, where: str, via: str | None = None, methods: str = "static"
):
    """A run on ``data`` whose ``quantlens.compare.run.<where>`` meets a Ctrl-C (see
    ``interrupter``)."""
    from quantlens.compare import run as compare_mod

    monkeypatch.setattr(compare_mod, where, interrupter(via))
    return _run(
        capsys,
        "digits-cnn",
        "--data",
        str(data),
        "--methods",
        methods,
        "--reps",
        "1",
        "--no-memory",
        "--out",
        str(out),
    )


def test_ctrl_c_keeps_the_rows_in_results_json(capsys, tmp_path, small_data, monkeypatch):
    out = tmp_path / "r"
    code, _, err = _run_interrupted(capsys, monkeypatch, small_data, out, where="quantize_one")
    assert code == 130 and "interrupted" in err
    data = json.loads((out / "results.json").read_text())
    assert data["interrupted"] and [r["name"] for r in data["rows"]] == ["float"]


def test_ctrl_c_wrapped_in_another_error_inside_a_method_stops_the_run(
    capsys, tmp_path, small_data, monkeypatch
):
    out = tmp_path / "r"
    # torch re-raises a Ctrl-C in a lazy import as another error, the interrupt its __cause__
    code, _, err = _run_interrupted(
        capsys,
        monkeypatch,
        small_data,
        out,
        where="quantize_one",
        via="cause",
        methods="qat,static",
    )
    assert code == 130 and "interrupted" in err and "failed" not in err
    data = strict_json((out / "results.json").read_text())
    assert data["interrupted"] and [r["name"] for r in data["rows"]] == ["float"]


def test_ctrl_c_during_the_float_row_writes_nothing(capsys, tmp_path, small_data, monkeypatch):
    out = tmp_path / "r"
    code, _, err = _run_interrupted(capsys, monkeypatch, small_data, out, where="measure_row")
    assert code == 130 and "nothing written" in err and len(err.strip().splitlines()) <= 2
    assert not out.exists()


def test_a_checkpoint_is_compared_with_the_float_model_it_came_from(
    capsys, tmp_path, small_data, digits_calib
):
    import quantlens as ql

    calib = digits_calib.inputs[:64]
    qm = ql.quantize(
        zoo.load_model("digits-cnn"),
        ql.Static(observer="minmax", calib_batches=1),
        calib_data=calib,
    )
    ql.save(qm, tmp_path / "ckpt")
    out = tmp_path / "r"
    code, _, err = _run(
        capsys,
        str(tmp_path / "ckpt"),
        "--data",
        str(small_data),
        "--methods",
        "w8",
        "--reps",
        "1",
        "--no-memory",
        "--out",
        str(out),
    )
    assert code == 0, err
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["float", "checkpoint", "w8"]
    assert rows[0]["accuracy"] > 95 and rows[1]["method"] == "static" and rows[1]["accuracy"] > 90


def test_module_factory_models_get_memory_measured(capsys, tmp_path, small_data):
    out = tmp_path / "r"
    code, _, err = _run(
        capsys,
        "quantlens.zoo.models:DigitsCNN",
        "--data",
        str(small_data),
        "--methods",
        "w8",
        "--reps",
        "1",
        "--out",
        str(out),
    )
    assert code == 0, err
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert all(r["peak_memory_bytes"] is not None for r in rows), [r["notes"] for r in rows]


def test_the_analysis_flag_writes_the_sensitivity_plot(capsys, tmp_path, small_data):
    out = tmp_path / "report"
    code, stdout, err = _run(
        capsys,
        "digits-cnn",
        "--data",
        str(small_data),
        "--calib-data",
        str(small_data),
        "--methods",
        "w8",
        "--reps",
        "1",
        "--no-memory",
        "--analysis",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert (out / "sensitivity.png").is_file()
    data = json.loads((out / "results.json").read_text())
    ranked = {r["name"] for r in data["sensitivity"]["rows"]}
    assert (
        data["sensitivity"]["row"] == "w8"
    )  # w8 covers the CNN's convolutions: all 7 layers are ranked
    assert ranked == {
        "stem.0",
        "block1.conv1",
        "block1.conv2",
        "down.0",
        "block2.conv1",
        "block2.conv2",
        "fc",
    }
    assert "--analysis" in data["command"]
    assert "most sensitive layer of w8" in stdout
    page = (out / "report.html").read_text()
    assert "Where the error comes from" in page and 'alt="sensitivity"' in page


def test_ctrl_c_while_start_up_imports_torch_is_one_line_exit_130():
    import subprocess

    # a Ctrl-C that lands while `import torch` runs (the first seconds of every command)
    code = (
        "import sys\n"
        "class Interrupt:\n"
        "    @staticmethod\n"
        "    def find_spec(name, *args):\n"
        "        if name == 'torch':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt)\n"
        "import quantlens_launcher\n"
        "sys.exit(quantlens_launcher.main(['compare']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "quantlens: interrupted"
