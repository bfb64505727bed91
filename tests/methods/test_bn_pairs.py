"""BatchNorm pairs found by running a model torch.fx cannot trace, folded by Static."""

from __future__ import annotations

import pytest
import torch
from helpers import random_tensor
from torch import nn

import quantlens as ql
from quantlens.core.data import Batch
from quantlens.methods.bn_pairs import runtime_pairs


class _ConvLayer(nn.Module):
    """Like Hugging Face's MobileNetV2ConvLayer: Python padding torch.fx cannot trace, the
    layers called as attributes (no nn.Sequential)."""

    def __init__(self, cin: int, cout: int, residual: bool = False) -> None:
        super().__init__()
        self.convolution = nn.Conv2d(cin, cout, 3)
        self.normalization = nn.BatchNorm2d(cout)
        self.residual = residual

    def forward(self, x):
        x = nn.functional.pad(x, [1, 1, 1, 1] if int(x.shape[-1]) > 0 else [0, 0, 0, 0])
        y = self.convolution(x)
        out = self.normalization(y)
        return out + y if self.residual else out  # the residual also reads the conv output


@pytest.mark.parametrize("residual", [False, True])
def test_runtime_pairs_fold_only_what_folds_exactly(residual):
    torch.manual_seed(0)
    model = nn.Sequential(_ConvLayer(3, 8), nn.ReLU(), _ConvLayer(8, 8, residual=residual))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    model.eval()
    pairs = runtime_pairs(model, Batch((random_tensor(2, 3, 8, 8, seed=1),)))
    expected = [("0.convolution", "0.normalization")]
    if not residual:
        expected.append(("2.convolution", "2.normalization"))
    assert pairs == expected


def test_static_folds_batchnorms_found_by_running():
    torch.manual_seed(0)
    model = nn.Sequential(_ConvLayer(3, 8), nn.ReLU(), _ConvLayer(8, 4)).eval()
    calib = [random_tensor(4, 3, 8, 8, seed=s) for s in range(2)]
    qm = ql.quantize(model, ql.Static(observer="minmax"), calib_data=calib)
    assert any(
        n.startswith("folded BatchNorm") and "2.normalization" in n
        for n in qm.quantlens_summary.notes
    )
    assert not any(r.kind == "BatchNorm2d" for r in qm.quantlens_summary.skipped)
