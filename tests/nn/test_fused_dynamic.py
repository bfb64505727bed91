"""The fused int8 dynamic paths (codes without their zero-point, one-pass epilogue) give the
outputs of the reference path's math -- the same codes, dequantized, then a float matmul --
over widths 1-130, 3-D inputs and both activation granularities."""

from __future__ import annotations

import pytest
import torch
from helpers import random_tensor
from torch import nn

from quantlens.core.metrics import cosine_similarity, max_abs_error
from quantlens.nn.act_quant import ACT_LEVELS, activation_codes, activation_int8
from quantlens.nn.dynamic_linear import DynamicLinear
from quantlens.nn.kernels import registry

WIDTHS = (1, 2, 3, 7, 16, 31, 64, 100, 127, 128, 130)


def _fast_paths() -> list[str]:
    probe = DynamicLinear.from_float(nn.Linear(16, 8))
    paths = registry.kernel_paths("dynamic")
    return [n for n in ("int_mm", "fbgemm") if paths[n].accepts(probe, torch.zeros(1, 16)) is None]


def test_int8_codes_are_the_reference_codes_less_their_zero_point():
    x = torch.cat(
        [
            random_tensor(6, 130, scale=3.0),
            random_tensor(2, 130, seed=1, dist="uniform").abs() + 0.5,  # all positive
            -random_tensor(2, 130, seed=2, dist="uniform").abs() - 0.5,  # all negative
            torch.zeros(1, 130),
        ]
    )
    for per_token in (True, False):
        q, s = activation_int8(x, per_token)
        codes, s_ref, z = activation_codes(x, per_token)
        assert q.dtype == torch.int8 and q.abs().max() <= ACT_LEVELS
        torch.testing.assert_close(s, s_ref)
        assert torch.equal(q.float(), codes - z)


@pytest.mark.parametrize("activations", ["per_token", "per_tensor"])
@pytest.mark.parametrize("path", _fast_paths())
def test_fused_paths_match_the_reference_over_widths(path, activations):
    for k in WIDTHS:
        if path == "int_mm" and k < 2:
            continue  # torch._int_mm returns wrong sums for K = 1 (declared in its Shapes)
        torch.manual_seed(k)
        lin = nn.Linear(k, 3 + k % 17, bias=k % 2 == 0)
        layer = DynamicLinear.from_float(lin, activations=activations)
        x = random_tensor(3, 5, k, seed=k)  # 3-D input
        layer.kernel = "reference"
        ref = layer(x)
        layer.kernel = path
        out = layer(x)
        assert out.shape == ref.shape == (3, 5, lin.out_features)
        assert cosine_similarity(out.flatten(), ref.flatten()) > 0.99999, (path, k)
        assert max_abs_error(out, ref) <= 1e-4 * max(1.0, ref.abs().max().item()), (path, k)


@pytest.mark.parametrize("path", _fast_paths())
def test_fused_paths_match_the_reference_at_many_tokens(path):
    torch.manual_seed(0)
    lin = nn.Linear(384, 96)
    layer = DynamicLinear.from_float(lin)
    x = random_tensor(4, 130, 384, dist="student_t")  # heavy tails: outlier tokens
    layer.kernel = "reference"
    ref = layer(x)
    layer.kernel = path
    out = layer(x)
    assert cosine_similarity(out.flatten(), ref.flatten()) > 0.99999
    assert max_abs_error(out, ref) < 1e-2 * ref.abs().max().item()


@pytest.mark.parametrize("path", _fast_paths())
def test_fused_paths_run_under_autograd(path):
    # inside a float model trained or run with grad enabled, the input carries a graph
    layer = DynamicLinear.from_float(nn.Linear(32, 8))
    x = random_tensor(4, 32).requires_grad_()
    layer.kernel = path
    with torch.no_grad():
        expected = layer(x)
    out = layer(x)
    assert torch.equal(out.detach(), expected)
