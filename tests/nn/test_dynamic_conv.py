"""DynamicConv2d: int8 per-channel weights, each call's input quantized per tensor (uint8)."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import assert_similar, random_tensor
from safetensors.torch import load_file, save_file
from torch import nn

from quantlens.errors import InputError, UnknownNameError
from quantlens.nn.dynamic_conv import (
    DynamicConv2d,
    conv_kernels,
    quantize_conv_weight,
    quantize_input,
)
from quantlens.nn.registry import DynamicSpec

PATHS = tuple(conv_kernels())

# (conv, input shape): plain, depthwise strided, grouped + dilated + "same", even-kernel
# "same" (asymmetric padding), reflect padding without bias, 1x1 on 1x1 spatial at batch 1,
# a non-square kernel
CASES = {
    "plain": (lambda: nn.Conv2d(3, 8, 3, padding=1), (2, 3, 9, 9)),
    "depthwise": (lambda: nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16), (1, 16, 7, 7)),
    "grouped": (
        lambda: nn.Conv2d(16, 32, 3, padding="same", dilation=2, groups=4),
        (2, 16, 6, 5),
    ),
    "same-even": (lambda: nn.Conv2d(4, 6, 4, padding="same"), (2, 4, 6, 6)),
    "reflect": (
        lambda: nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect", bias=False),
        (2, 4, 6, 6),
    ),
    "1x1-spatial": (lambda: nn.Conv2d(8, 4, 1), (1, 8, 1, 1)),
    "3x3-on-1x1": (lambda: nn.Conv2d(8, 4, 3, padding=1), (1, 8, 1, 1)),
    "kernel-3x1": (lambda: nn.Conv2d(3, 4, (3, 1), stride=(1, 2), padding=(1, 0)), (3, 3, 5, 6)),
}


def _conv(case: str, seed: int = 0) -> tuple[nn.Conv2d, torch.Tensor]:
    make, shape = CASES[case]
    torch.manual_seed(seed)
    return make().eval(), random_tensor(*shape, seed=seed + 1)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", list(CASES))
def test_paths_track_float_on_every_geometry(case, path):
    conv, x = _conv(case)
    q = DynamicConv2d.from_float(conv)
    q.kernel = path
    with torch.no_grad():
        y, ref = q(x), conv(x)
    assert_similar(y, ref, min_cosine=0.999, min_sqnr_db=30, msg=f"{case}/{path}")
    assert y.is_contiguous()  # view() after it works as after nn.Conv2d
    y.view(y.shape[0], -1)


def test_paths_compute_the_same_quantized_values():
    conv, x = _conv("grouped")
    q = DynamicConv2d.from_float(conv)
    outs = {}
    for path in PATHS:
        q.kernel = path
        outs[path] = q(x)
    # same codes and weights; only the accumulation order differs
    for path in PATHS[1:]:
        assert_similar(outs[path], outs[PATHS[0]], atol=1e-4, rtol=1e-4, msg=path)


def test_small_cnn_output_stays_close_to_float():
    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ).eval()
    qcnn = copy.deepcopy(cnn)
    for i in (0, 2, 4):
        qcnn[i] = DynamicConv2d.from_float(cnn[i])
    x = random_tensor(4, 3, 16, 16, seed=3)
    with torch.no_grad():
        assert_similar(qcnn(x), cnn(x), min_cosine=0.99)


def test_weight_codes_and_input_codes():
    w = random_tensor(6, 2, 3, 3, seed=2)
    wq, ws = quantize_conv_weight(w)
    assert wq.dtype == torch.int8 and int(wq.abs().max()) == 127
    assert torch.equal(wq.flatten(1).abs().amax(1), torch.full((6,), 127, dtype=torch.int8))
    assert_similar(wq.float() * ws.reshape(-1, 1, 1, 1), w, atol=float(ws.max()) / 2 + 1e-7)
    _, ws_tensor = quantize_conv_weight(w, per_channel=False)
    assert torch.equal(ws_tensor, ws.max().expand(6))

    x = torch.tensor([[-1.0, 0.0, 0.5, 3.0]])
    q, s, z = quantize_input(x)
    assert q.dtype == torch.uint8 and q.tolist() == [[0, 64, 96, 255]]
    assert z == 64 and s == pytest.approx(4 / 255)
    q, s, z = quantize_input(torch.tensor([2.0, 4.0]))  # all positive: the range starts at 0
    assert z == 0 and q.tolist() == [128, 255]


def test_channels_last_in_channels_last_out_and_unbatched_input():
    conv, x = _conv("plain")
    q = DynamicConv2d.from_float(conv)
    y = q(x.contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_similar(y, q(x), atol=1e-5)
    assert_similar(q(x[0]), q(x[:1])[0], atol=1e-5)  # (C, H, W) as nn.Conv2d takes it


def test_empty_batch_and_non_finite_input_behave_as_float():
    conv, x = _conv("plain")
    q = DynamicConv2d.from_float(conv)
    assert q(x[:0]).shape == conv(x[:0]).shape
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    y = q(bad)
    assert torch.isnan(y[0]).any() and torch.isfinite(y[1]).all()


def test_state_dict_is_plain_tensors_and_round_trips(tmp_path):
    conv, x = _conv("grouped")
    q = DynamicConv2d.from_float(conv, per_channel=False)
    y = q(x)  # fills the packed-weight cache, which must not be saved
    state = q.state_dict()
    assert set(state) == {"weight", "weight_scale", "bias"}
    assert state["weight"].dtype == torch.int8
    save_file(state, tmp_path / "w.safetensors")
    empty = DynamicConv2d.from_config(q.config())
    empty.load_state_dict(load_file(tmp_path / "w.safetensors"))
    assert torch.equal(empty(x), y)
    assert torch.equal(copy.deepcopy(q)(x), y)
    assert "per-tensor" in repr(q) and "groups=4" in repr(q)


def test_mistakes_raise_one_line_errors():
    q = DynamicConv2d.from_float(nn.Conv2d(3, 4, 3))
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        q(torch.randn(1, 5, 8, 8))
    with pytest.raises(InputError, match="floating-point"):
        q(torch.zeros(1, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(UnknownNameError, match="valid: auto"):
        q.kernel = "nope"
    with pytest.raises(InputError, match="nn.Conv2d"):
        DynamicConv2d.from_float(nn.Linear(3, 4))
    with pytest.raises(InputError, match="int8 weights only"):
        DynamicConv2d.from_float(nn.Conv2d(3, 4, 3), DynamicSpec(dtype="float16"))
    with pytest.raises(InputError, match="divisible by groups"):
        DynamicConv2d(6, 4, 3, groups=4)


def test_forced_path_that_cannot_run_says_why():
    q = DynamicConv2d.from_float(nn.Conv2d(3, 4, 3))
    q.kernel = "onednn"
    x = torch.randn(1, 3, 6, 6, device="meta")
    with pytest.raises(InputError, match="CPU only"):
        q.kernel_for(x)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the input-shape check
def test_graph_exports_trace_the_same_quantized_values():
    conv, x = _conv("grouped")
    q = DynamicConv2d.from_float(conv).eval()
    expected = q(x)
    traced = torch.jit.trace(q, (x,))  # (TorchScript; ONNX export traces the same way)
    assert_similar(traced(x * 2), q(x * 2), atol=1e-5)  # scales follow the input
    exported = torch.export.export(q, (x,)).module()
    assert_similar(exported(x), expected, atol=1e-5)
