"""``quantlens quantize|qat`` over several processes: launched by a real ``torchrun``, and
on forked gloo ranks through ``quantlens.cli.main``."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys

import pytest
import torch
from helpers import run_ranks
from torch import nn

import quantlens as ql
from quantlens import zoo
from quantlens.cli import main

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not built in"
)

FACTORY = f"{__name__}:make_net"


def make_net() -> nn.Module:
    """A small Conv-BN-ReLU net for 8x8 digits (the CLI calls it as ``test_torchrun:make_net``)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(512, 10),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _digits_file(tmp_path, n: int = 512) -> str:
    train = zoo.load_dataset("digits", "train")
    path = tmp_path / "digits.pt"
    torch.save({"inputs": train.inputs[:n], "labels": train.labels[:n]}, path)
    return str(path)


@pytest.mark.slow
def test_torchrun_two_processes_train_qat_and_rank_0_writes_once(tmp_path):
    out = tmp_path / "ckpt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "QUANTLENS_SYNC_TIMEOUT": "120",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"),
        *("--master_addr=127.0.0.1", f"--master_port={_free_port()}"),
        *("-m", "quantlens", "qat", FACTORY, "--trust-code", "--lr", "0.05", "--sync-bn"),
        *("--train-data", _digits_file(tmp_path), "-o", str(out)),
    ]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone prints the summary
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("quantlens qat:")]
    assert lines[0] == "quantlens qat: QAT training for 1 epoch(s) at lr 0.05 on 2 ranks"
    assert len(lines) == 2 and lines[1].startswith("quantlens qat: epoch 1/1: train loss ")
    qm = ql.load(out, trust_code=True)
    notes = " ".join(qm.quantlens_summary.notes)
    assert "synchronised over 2 ranks" in notes
    assert "1 SyncBatchNorm layer(s) fused like BatchNorm" in notes  # --sync-bn
    assert {r.name for r in qm.quantlens_summary.quantized} == {"0", "4"}


def _cli_rank(rank: int, world: int, argv: list[str]) -> list:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return [code, stdout.getvalue(), stderr.getvalue()]


def test_quantize_static_on_two_ranks_shares_calibration_and_prints_once(tmp_path, one_thread):
    out = tmp_path / "ckpt"
    argv = [
        *("quantize", FACTORY, "--trust-code", "--method", "static"),
        *("--calib-data", _digits_file(tmp_path, 256), "-o", str(out)),
    ]
    results = run_ranks(_cli_rank, 2, argv, timeout=120)
    for ok, value in results:
        assert ok, value
    (code0, out0, err0), (code1, out1, err1) = results[0][1], results[1][1]
    assert code0 == code1 == 0, (err0, err1)
    assert "wrote " in out0 and (out1, err1) == ("", "")
    notes = ql.load(out, trust_code=True).quantlens_summary.notes
    assert any("merged over 2 ranks" in n for n in notes), notes


def test_sync_bn_applies_only_to_qat(tmp_path, capsys):
    argv = ["quantize", FACTORY, "--trust-code", "--sync-bn", "-o", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "quantlens quantize: error: --sync-bn applies only to --method qat (this is 'weight_only')"
    )
