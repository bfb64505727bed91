"""SyncBatchNorm QAT training on GPUs under a real ``torchrun`` (nccl, one GPU per rank):
skipped where fewer than 2 CUDA devices are present. Its convert path (SyncBatchNorm folded
like BatchNorm, on CPU) and CPU training over ranks are tested in test_qat_distributed.py
and test_int8_robust.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

SCRIPT = """
import json, os, sys
import torch
from torch import nn
import quantlens as ql
from quantlens.core import distributed, torchrun

torchrun.init_from_env()
rank = torch.distributed.get_rank()
device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                    nn.Flatten(), nn.Linear(512, 10))
net = nn.SyncBatchNorm.convert_sync_batchnorm(net).to(device)
g = torch.Generator().manual_seed(1)
x, y = torch.rand(256, 1, 8, 8, generator=g), torch.randint(0, 10, (256,), generator=g)
qat = ql.prepare_qat(net, ql.QAT(sync="off"), example_inputs=(x[:2].to(device),))
ql.train_qat(qat, (x.to(device), y.to(device)), epochs=2, lr=0.05)
bn = qat.get_submodule("0").bn
stats = torch.stack([bn.running_mean, bn.running_var]).cpu().tolist()
qm = ql.convert(qat.eval())
weights = qm.get_submodule("0").weight().int_repr().tolist()
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump({"bn": stats, "weights": weights, "backend": torch.distributed.get_backend()}, f)
torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (nccl)")
def test_sync_batchnorm_trains_on_two_gpus_with_the_same_statistics(tmp_path):
    script = tmp_path / "train_syncbn.py"
    script.write_text(SCRIPT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "QUANTLENS_SYNC_TIMEOUT": "120"}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"),
            *("--master_addr=127.0.0.1", f"--master_port={port}", str(script), str(tmp_path)),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["backend"] == "nccl"
    assert ranks[0]["bn"] == ranks[1]["bn"]  # SyncBatchNorm: statistics over both ranks
    assert ranks[0]["weights"] == ranks[1]["weights"]
