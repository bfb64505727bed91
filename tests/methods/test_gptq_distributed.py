"""GPTQ under torch.distributed: Hessians and sample counts summed over ranks give every
rank the weights one process over all the calibration data gives."""

from __future__ import annotations

import pytest
import torch
from helpers import random_tensor, run_ranks
from torch import nn

import quantlens as ql


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 32)).eval()


def _batches() -> list[torch.Tensor]:
    return list(random_tensor(6, 24, 64, seed=5, dist="laplace").unbind(0))  # 6 batches of (24, 64)


def _gptq(batches: list[torch.Tensor], sync: bool = True) -> list:
    qm = ql.quantize(
        _model(),
        ql.WeightOnly(bits=4, group_size=32, algorithm="gptq", sync=sync),
        calib_data=batches,
    )
    with torch.no_grad():
        return qm(random_tensor(8, 64, seed=9)).tolist()


def _rank(rank: int, world: int, bounds: list[int], sync: bool) -> list:
    return _gptq(_batches()[bounds[rank] : bounds[rank + 1]], sync)


@pytest.mark.slow
def test_gptq_hessians_summed_over_three_uneven_ranks(one_thread):
    whole = torch.tensor(_gptq(_batches()))
    results = run_ranks(_rank, 3, [0, 1, 3, 6], True)
    for ok, value in results:
        assert ok, value
    assert results[0][1] == results[1][1] == results[2][1]  # the same weights on every rank
    merged = torch.tensor(results[0][1])
    assert torch.allclose(merged, whole, rtol=0, atol=1e-5)  # up to float summation order
    own = run_ranks(_rank, 3, [0, 1, 3, 6], False)  # sync=False: rank 0 uses its one batch alone
    assert own[0][0] and (torch.tensor(own[0][1]) - whole).abs().max() > 1e-3
