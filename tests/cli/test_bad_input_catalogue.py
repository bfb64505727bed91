"""A catalogue of bad command lines: each exits with its code (2 bad usage or input, 1 a
failure of ours, 130 Ctrl-C) and prints exactly one error line, never a traceback."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import quantlens.cli.compare as compare_cli
from quantlens.cli import main
from quantlens.errors import UnknownNameError


def make_mlp() -> nn.Module:
    """A model with Linear layers (weight-only / GPTQ have something to quantize)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))


MLP = f"{__name__}:make_mlp"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    labels = torch.zeros(8, dtype=torch.long)
    torch.save({"inputs": torch.full((8, 1, 8, 8), float("nan")), "labels": labels}, d / "nan.pt")
    torch.save({"inputs": torch.empty(0, 1, 8, 8), "labels": labels[:0]}, d / "empty.pt")
    torch.save({"inputs": torch.rand(8, 8), "labels": labels}, d / "wrong.pt")
    torch.save({"inputs": torch.rand(8, 3), "labels": labels}, d / "wrong_mlp.pt")
    np.savez(d / "str.npz", inputs=np.array(["a", "b"]))
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "latin.json").write_bytes(b'{"method": "\xe9"}')
    (d / "list.json").write_text("[1, 2]")
    (d / "broken.json").write_text("{")
    (d / "afile").write_text("x")
    os.symlink(d / "nowhere" / "x", d / "dangling")
    return d


C = ["compare", "digits-cnn", "--methods", "w8", "--no-memory", "--reps", "1"]
Q = ["quantize", "digits-cnn", "--method", "dynamic", "-o", "{out}"]  # a later -o wins

# (id, argv with {d} for the files folder and {out} for a fresh output path, exit code, words)
CASES = [
    ("compare-nan-data", [*C, "--data", "{d}/nan.pt"], 2, "512 NaN/Inf value(s)"),
    ("compare-empty-data", [*C, "--data", "{d}/empty.pt"], 2, "no samples"),
    ("compare-wrong-shape", [*C, "--data", "{d}/wrong.pt"], 2, "does not fit the model"),
    ("compare-npz-strings", [*C, "--data", "{d}/str.npz"], 2, "not numbers"),
    ("compare-max-drop-nan", [*C, "--max-drop", "nan"], 2, "--max-drop: must be a finite number"),
    ("compare-max-drop-negative", [*C, "--max-drop", "-1"], 2, "--max-drop"),
    ("compare-max-drop-text", [*C, "--max-drop", "lots"], 2, "expected a number"),
    (
        "compare-threads-huge",
        [*C, "--threads", "100000"],
        2,
        "--threads: must be an integer from 1",
    ),
    ("compare-threads-zero", [*C, "--threads", "0"], 2, "--threads"),
    ("compare-reps-zero", [*C, "--reps", "0"], 2, "--reps"),
    (
        "compare-qat-epochs-negative",
        [*C, "--qat-epochs", "-1"],
        2,
        "--qat-epochs: must be an integer >= 1",
    ),
    (
        "compare-nan-calib-data",
        [*C, "--calib-data", "{d}/nan.pt"],
        2,
        "calib_data holds 512 NaN/Inf",
    ),
    (
        "compare-empty-train-data",
        [*C, "--train-data", "{d}/empty.pt"],
        2,
        "train_data has no samples",
    ),
    ("compare-long-data", [*C, "--data", "y" * 5000], 2, "(5002 characters)"),
    ("compare-unknown-method", [*C[:2], "--methods", "w9"], 2, "w9"),
    (
        "quantize-static-wrong-calib",
        [
            "quantize",
            "digits-cnn",
            "--method",
            "static",
            "--calib-data",
            "{d}/wrong.pt",
            "-o",
            "{out}",
        ],
        2,
        "cannot run on calib_data",
    ),
    (
        "quantize-static-nan-calib",
        [
            "quantize",
            "digits-cnn",
            "--method",
            "static",
            "--calib-data",
            "{d}/nan.pt",
            "-o",
            "{out}",
        ],
        2,
        "calib_data holds 512 NaN/Inf",
    ),
    (
        "quantize-static-empty-calib",
        [
            "quantize",
            "digits-cnn",
            "--method",
            "static",
            "--calib-data",
            "{d}/empty.pt",
            "-o",
            "{out}",
        ],
        2,
        "calib_data has no samples",
    ),
    (
        "quantize-gptq-wrong-calib",
        [
            "quantize",
            MLP,
            "--algorithm",
            "gptq",
            "--group-size",
            "32",
            "--calib-data",
            "{d}/wrong_mlp.pt",
            "-o",
            "{out}",
        ],
        2,
        "cannot run on calib_data",
    ),
    ("quantize-deep-config", [*Q, "--config", "{d}/deep.json"], 2, "nested too deeply"),
    ("quantize-latin1-config", [*Q, "--config", "{d}/latin.json"], 2, "is not UTF-8"),
    ("quantize-list-config", [*Q, "--config", "{d}/list.json"], 2, "JSON object"),
    ("quantize-broken-config", [*Q, "--config", "{d}/broken.json"], 2, "not valid JSON"),
    ("quantize-missing-config", [*Q, "--config", "{d}/none.json"], 2, "does not exist"),
    (
        "quantize-non-utf8-config-name",
        [*Q, "--config", "{d}/\udce9.json"],
        2,
        "\\udce9.json does not exist",
    ),
    ("quantize-folder-as-config", [*Q, "--config", "{d}"], 2, "cannot read the config"),
    ("quantize-long-model-5k", ["quantize", "x" * 5000, "-o", "{out}"], 2, "(5002 characters)"),
    (
        "quantize-long-model-100k",
        ["quantize", "x" * 100_000, "-o", "{out}"],
        2,
        "(100002 characters)",
    ),
    ("quantize-bits-99", [*Q, "--bits", "99"], 2, "--bits: must be an integer from 1 to 8"),
    ("quantize-out-under-file", [*Q, "-o", "{d}/afile/sub"], 2, "afile is not a folder"),
    ("quantize-out-is-a-file", [*Q, "-o", "{d}/afile"], 2, "afile is a file"),
    ("compare-out-under-file", [*C, "--out", "{d}/afile/sub"], 2, "afile is not a folder"),
    ("quantize-out-too-long", [*Q, "-o", "{d}/" + "z" * 300], 2, "characters)"),
    ("quantize-no-out", ["quantize", "digits-cnn"], 2, "-o/--out"),
    ("debug-top-negative", ["debug", "digits-cnn", "--data", "digits", "--top", "-3"], 2, "--top"),
    (
        "debug-min-sqnr-inf",
        ["debug", "digits-cnn", "--data", "digits", "--min-sqnr-db", "inf"],
        2,
        "--min-sqnr-db",
    ),
    (
        "sensitivity-nan-data",
        ["sensitivity", "digits-cnn", "--data", "{d}/nan.pt", "--method", "w8"],
        2,
        "NaN/Inf",
    ),
    (
        "sensitivity-max-batches-zero",
        ["sensitivity", "digits-cnn", "--max-batches", "0"],
        2,
        "--max-batches",
    ),
    ("unknown-command", ["frobnicate"], 2, "invalid choice"),
]


def _fill(argv, d, out):
    return [a.replace("{d}", str(d)).replace("{out}", str(out)) for a in argv]


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


SLOW = {
    "quantize-static-wrong-calib"
}  # graph capture and calibration run before the model rejects it


@pytest.mark.parametrize(
    "argv, code, words",
    [
        pytest.param(*c[1:], id=c[0], marks=[pytest.mark.slow] if c[0] in SLOW else [])
        for c in CASES
    ],
)
def test_bad_input_catalogue(files, tmp_path, capsys, argv, code, words):
    out = tmp_path / "out"
    argv = _fill(argv, files, out)
    if argv[0] == "compare" and "--out" not in argv:
        argv += ["--out", str(out)]
    assert main(argv) == code
    line = _one_error_line(capsys.readouterr().err)
    assert words in line
    assert len(line) < 1200
    assert not out.exists()


@pytest.mark.parametrize("command", [Q[:-2] + ["-o"], [*C, "--out"]], ids=["quantize", "compare"])
def test_dangling_symlink_out(files, capsys, command):
    assert main([*command, str(files / "dangling")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "dangling is a link to" in line and "which does not exist" in line


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders"
)
def test_read_only_parent(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert main([*Q[:-2], "-o", str(parent / "sub")]) == 2
    finally:
        parent.chmod(0o755)
    assert "ro" in _one_error_line(capsys.readouterr().err)


def test_non_utf8_out_is_written_and_printed(tmp_path, capsys):
    out = os.path.join(str(tmp_path), "\udce9out")
    assert main([*Q[:-2], "-o", out]) == 0
    assert os.path.isdir(out) and "\\udce9out" in capsys.readouterr().out


@pytest.mark.parametrize(
    "raised, code, words",
    [
        (
            RuntimeError("something\nbroke"),
            1,
            "internal error (RuntimeError: something); rerun with --debug",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/x/y"),
            1,
            "No space left on device: /x/y",
        ),
        (PermissionError(errno.EACCES, "Permission denied", "/x/y"), 2, "Permission denied: /x/y"),
        (MemoryError(), 1, "out of memory"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_failures_of_ours_map_to_exit_codes(monkeypatch, capsys, raised, code, words):
    def fail(args):
        raise raised

    monkeypatch.setattr(compare_cli, "run", fail)
    assert main(["compare"]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and words in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path, where):
    argv = ["quantize", "no-such-model", "-o", str(tmp_path / "out")]
    with pytest.raises(UnknownNameError):
        main(["--debug", *argv] if where == "before" else [*argv, "--debug"])


@pytest.mark.slow
def test_threads_huge_in_a_real_process():
    """--threads 100000 segfaulted (exit 139) once torch started that many OpenMP threads."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "quantlens", "compare", "--threads", "100000"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_recorded_command_of_a_non_utf8_out_is_utf8():
    """compare --out with undecodable bytes crashed writing report.md (UnicodeEncodeError)."""
    from quantlens.cli import build_parser

    args = build_parser().parse_args(["compare", "--out", "rep\udce9"])
    line = compare_cli.command_line(args)
    assert "rep\\xe9" in line and line.encode("utf-8")


def test_a_torch_that_cannot_be_imported_is_one_line_exit_1():
    code = (
        "import sys\n"
        "class Broken:\n"
        "    @staticmethod\n"
        "    def find_spec(name, *args):\n"
        "        if name == 'torch':\n"
        "            raise ImportError('libtorch_cpu.so: cannot open shared object file', "
        "name='torch')\n"
        "sys.meta_path.insert(0, Broken)\n"
        "import quantlens_launcher\n"
        "sys.exit(quantlens_launcher.main(['compare']))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("quantlens: error: cannot import torch (libtorch_cpu.so")
    assert len(done.stderr.strip().splitlines()) == 1
