"""HQQ optimises the grid of every group without clipping the outlier weights that matter:
its error is below round-to-nearest's on heavy-tailed weights and on SmolLM2's own layers."""

from __future__ import annotations

import pytest
import torch
from helpers import generator, random_tensor

import quantlens as ql
from quantlens.core.layout import to_blocks
from quantlens.methods.weight_only.hqq import hqq_quantize

W = ql.WeightOnly


def _errors(w: torch.Tensor, bits: int) -> dict[str, torch.Tensor]:
    """Each group's error ``(W_hat - W)`` of RTN and HQQ, as blocks ``(rows, groups, 128)``."""
    scheme = W(bits=bits, group_size=128).scheme_for(w.shape)
    out = {}
    for name, qt in (("rtn", ql.quantize_tensor(w, scheme)), ("hqq", hqq_quantize(w, scheme))):
        out[name] = to_blocks(qt.dequantize() - w, scheme)
    return out


def _outlier_weight(rows: int = 96, cols: int = 512) -> torch.Tensor:
    """LLM-like rows: Laplace weights of scale 0.02 and, in a few columns, weights 10x larger."""
    w = random_tensor(rows, cols, dist="laplace", scale=0.02).float()
    cols_out = torch.randperm(cols, generator=generator(3))[:6]
    w[:, cols_out] *= 10
    return w


@pytest.mark.parametrize("bits", [3, 4])
def test_hqq_lowers_the_error_without_clipping_outliers(bits):
    w = _outlier_weight()
    err = _errors(w, bits)
    l4 = {k: e.pow(4).sum(-1) for k, e in err.items()}
    assert (l4["hqq"] <= l4["rtn"]).all()  # no group worse under the outlier-weighted measure
    assert err["hqq"].pow(2).mean() < 0.95 * err["rtn"].pow(2).mean()
    assert err["hqq"].abs().amax() <= 1.25 * err["rtn"].abs().amax()  # (was 1.48 at 4 bits)
    # the layer's output for inputs of unit variance follows the weight error
    x = random_tensor(64, w.shape[1], seed=5).float()
    out = {k: (x @ e.reshape(w.shape).T).pow(2).mean() for k, e in err.items()}
    assert out["hqq"] < out["rtn"]


SMOLLM2_LAYERS = ("blk.0.attn_q.weight", "blk.5.ffn_down.weight", "blk.29.attn_output.weight")


@pytest.fixture(scope="module")
def smollm2_weights() -> dict[str, torch.Tensor]:
    """Three of SmolLM2's weights, read straight from its GGUF file (no model built)."""
    gguf = pytest.importorskip("gguf")
    from quantlens.zoo import smollm2

    try:
        path = smollm2.gguf_path()
    except ql.errors.MissingDependencyError as exc:
        pytest.skip(str(exc))
    found = {t.name: t for t in gguf.GGUFReader(path).tensors if t.name in SMOLLM2_LAYERS}
    return {
        name: torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy())
        for name, t in found.items()
    }


@pytest.mark.slow
def test_hqq_beats_rtn_on_smollm2_layers(smollm2_weights):
    assert sorted(smollm2_weights) == sorted(SMOLLM2_LAYERS)
    for bits in (3, 4):
        for name, w in smollm2_weights.items():
            err = _errors(w, bits)
            assert (err["hqq"].pow(4).sum(-1) <= err["rtn"].pow(4).sum(-1)).all(), name
            assert err["hqq"].pow(2).mean() < 0.97 * err["rtn"].pow(2).mean(), name
