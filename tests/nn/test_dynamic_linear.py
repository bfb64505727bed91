"""DynamicLinear: int8 weights, per-token activations quantized on the fly; fp16 weights."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import assert_similar, generator
from safetensors.torch import load_file, save_file
from torch import nn

from quantlens.errors import InputError, UnknownNameError
from quantlens.nn.dynamic_linear import (
    ACT_LEVELS,
    DynamicLinear,
    quantize_activations,
    quantize_weight,
)
from quantlens.nn.kernels import cpu_features
from quantlens.nn.kernels.compiled import default_ops

INT8_PATHS = ("fbgemm", "int_mm", "reference")


def _layer(k=48, n=40, bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(k, n, bias=bias)


def _input(*shape, seed=1):
    return torch.randn(*shape, generator=generator(seed))


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("activations", ["per_token", "per_tensor"])
@pytest.mark.parametrize("bias", [True, False])
def test_int8_paths_agree_and_track_float(activations, bias):
    lin = _layer(bias=bias)
    x = _input(3, 7, 48)
    q = DynamicLinear.from_float(lin, activations=activations)
    outs = {}
    for path in INT8_PATHS:
        q.kernel = path
        outs[path] = q(x)
    for path in INT8_PATHS:  # the same integer codes, only float rounding order differs
        assert_similar(outs[path], outs["reference"], atol=1e-5, rtol=1e-5)
    assert outs["reference"].shape == (3, 7, 40)
    assert _rel(outs["reference"], lin(x)) < 0.03


def test_auto_picks_compiled_or_int_mm_with_vnni_else_fbgemm_on_x86_cpu():
    q = DynamicLinear.from_float(_layer())
    fast_int8 = bool({"vnni", "amx"} & cpu_features())
    fast_path = "compiled" if default_ops().load() else "int_mm"
    if fast_int8:
        assert q.kernel_for(torch.randn(2, 48)).name == fast_path
    elif torch.backends.quantized.engine in ("x86", "fbgemm"):
        assert q.kernel_for(torch.randn(2, 48)).name == "fbgemm"
    old = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = "qnnpack"
        assert q.kernel_for(torch.randn(2, 48)).name == (fast_path if fast_int8 else "reference")
        torch.testing.assert_close(q(torch.ones(2, 48)), q(torch.ones(2, 48)))
    finally:
        torch.backends.quantized.engine = old


def test_activation_codes_fit_seven_bits_without_clamp():
    x = torch.cat(
        [
            torch.randn(4, 64) * 3,
            torch.rand(2, 64) + 0.5,  # all positive
            -torch.rand(2, 64) - 0.5,  # all negative
            torch.zeros(1, 64),
            torch.full((1, 64), 1e-3),
        ]
    )
    xs, s, z = quantize_activations(x, per_token=True)
    codes = torch.round(xs)
    assert codes.min() >= 0 and codes.max() <= ACT_LEVELS
    assert s.shape == z.shape == (10, 1)
    assert torch.equal(z, torch.round(z))
    err = ((codes - z) * s - x).abs()
    assert (err <= s / 2 + 1e-6).all()  # within half a step of every input


def test_per_token_beats_per_tensor_with_an_outlier_token():
    lin = _layer()
    x = _input(16, 48)
    x[3] *= 100  # one loud token: a per-tensor scale crushes the others
    ref = lin(x)
    per_token = DynamicLinear.from_float(lin, activations="per_token")(x)
    per_tensor = DynamicLinear.from_float(lin, activations="per_tensor")(x)
    quiet_rows = [i for i in range(16) if i != 3]
    assert _rel(per_token[quiet_rows], ref[quiet_rows]) * 5 < _rel(
        per_tensor[quiet_rows], ref[quiet_rows]
    )


def test_weights_are_symmetric_per_channel_int8():
    w = _input(6, 10)
    w[0] *= 50
    wq, ws = quantize_weight(w)
    assert wq.dtype == torch.int8 and wq.abs().max() <= 127
    assert torch.allclose(ws, w.abs().amax(1) / 127)
    _, ws_t = quantize_weight(w, per_channel=False)
    assert torch.all(ws_t == ws_t[0])


def test_state_dict_is_plain_tensors_and_round_trips_through_safetensors(tmp_path):
    lin = _layer()
    q = DynamicLinear.from_float(lin)
    x = _input(5, 48)
    y = q(x)  # fills the packed-weight cache
    state = q.state_dict()
    assert set(state) == {"weight", "weight_scale", "bias"}
    assert state["weight"].dtype == torch.int8 and state["weight_scale"].dtype == torch.float32
    save_file(dict(state), str(tmp_path / "w.safetensors"))
    empty = DynamicLinear.from_config(q.config())
    empty.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    assert torch.equal(empty(x), y)
    clone = copy.deepcopy(q)
    assert clone._cache == {} and torch.equal(clone(x), y)


def test_loading_new_weights_drops_the_packed_cache():
    a, b = DynamicLinear.from_float(_layer(seed=0)), DynamicLinear.from_float(_layer(seed=5))
    x = _input(4, 48)
    a(x)
    a.load_state_dict(b.state_dict())
    assert torch.equal(a(x), b(x))


def test_float16_weights_fp32_compute():
    lin = _layer()
    q = DynamicLinear.from_float(lin, dtype="float16")
    assert q.weight.dtype == torch.float16 and "weight_scale" not in q.state_dict()
    x = _input(2, 9, 48)
    outs = {}
    for path in ("fp16", "upcast"):
        q.kernel = path
        outs[path] = q(x)
    assert_similar(outs["fp16"], outs["upcast"], atol=1e-5, rtol=1e-5)
    assert_similar(outs["upcast"], lin(x), atol=2e-3, rtol=2e-3)


def test_input_dtypes_shapes_and_errors():
    q = DynamicLinear.from_float(_layer())
    assert q(_input(4, 48).bfloat16()).dtype == torch.bfloat16
    assert q(torch.zeros(0, 48)).shape == (0, 40)
    assert q(_input(48)).shape == (40,)
    with pytest.raises(InputError, match="last dimension 48"):
        q(torch.zeros(2, 47))
    with pytest.raises(UnknownNameError, match="valid: auto"):
        q.kernel = "fp16"  # a float16 path on an int8 layer
    with pytest.raises(UnknownNameError):
        DynamicLinear(4, 4, dtype="int4")
    with pytest.raises(InputError):
        DynamicLinear.from_float(nn.Conv1d(4, 4, 1))
    assert "per-token" in repr(q)


@pytest.mark.parametrize("shape", [(1, 47, 33), (5, 384, 1536), (64, 16, 8)])
def test_int_mm_path_matches_the_reference_on_odd_shapes(shape):
    m, k, n = shape
    q = DynamicLinear.from_float(_layer(k, n))
    x = _input(m, k)
    q.kernel = "reference"
    ref = q(x)
    q.kernel = "int_mm"
    assert_similar(q(x), ref, atol=1e-5, rtol=1e-5)
