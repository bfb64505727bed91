"""Dynamic on convolutions: conv-only models are quantized instead of declined; Conv2d on
request elsewhere; checkpoints round-trip."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_similar, random_tensor
from torch import nn

import quantlens as ql
from quantlens.errors import ConfigError, NothingToQuantizeError
from quantlens.methods.dynamic import Dynamic, default_modules
from quantlens.nn.dynamic_conv import DynamicConv2d
from quantlens.nn.dynamic_linear import DynamicLinear


def _fire_net() -> nn.Module:
    """A SqueezeNet-style all-convolutional classifier (no Linear layer)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 8, 1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU(),
        nn.Conv2d(8, 10, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ).eval()


def _cnn_with_head() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()


def test_conv_only_model_is_quantized_by_default_and_says_so():
    model, x = _fire_net(), random_tensor(3, 3, 16, 16, seed=1)
    qm = ql.quantize(model, Dynamic())
    convs = [m for m in qm.modules() if isinstance(m, DynamicConv2d)]
    assert len(convs) == 4 and not any(isinstance(m, nn.Conv2d) for m in qm.modules())
    summary = qm.quantlens_summary
    assert len(summary.quantized) == 4 and "oneDNN" in summary.quantized[0].detail
    assert any("no Linear, LSTM or GRU" in n for n in summary.notes)
    with torch.no_grad():
        assert_similar(qm(x), model(x), min_cosine=0.99)
    assert isinstance(model[0], nn.Conv2d)  # the caller's model is untouched


def test_models_with_linear_layers_keep_convolutions_float_unless_asked():
    model = _cnn_with_head()
    assert default_modules(model) == ("linear", "lstm", "gru")
    qm = ql.quantize(model, Dynamic())
    assert isinstance(qm[4], DynamicLinear) and isinstance(qm[0], nn.Conv2d)
    (conv,) = [r for r in qm.quantlens_summary.skipped if r.kind == "Conv2d"]
    assert "conv2d" in conv.reason
    both = ql.quantize(model, Dynamic(modules=("linear", "conv2d")))
    assert isinstance(both[0], DynamicConv2d) and isinstance(both[4], DynamicLinear)
    x = random_tensor(2, 3, 8, 8, seed=2)
    with torch.no_grad():
        assert_similar(both(x), model(x), min_cosine=0.99)


def test_skip_and_per_tensor_weights_apply_to_convolutions():
    qm = ql.quantize(_fire_net(), Dynamic(per_channel=False, skip=("0",)))
    assert isinstance(qm[0], nn.Conv2d) and not qm[2].per_channel
    assert len(qm.quantlens_summary.quantized) == 3


def test_float16_has_no_convolution():
    with pytest.raises(NothingToQuantizeError):
        ql.quantize(_fire_net(), Dynamic(dtype="float16"))
    qm = ql.quantize(_cnn_with_head(), Dynamic(dtype="float16", modules=("linear", "conv2d")))
    (conv,) = [r for r in qm.quantlens_summary.skipped if r.kind == "Conv2d"]
    assert "no float16 convolution" in conv.reason


def test_checkpoint_round_trip(tmp_path):
    model, x = _fire_net(), random_tensor(2, 3, 16, 16, seed=4)
    qm = ql.quantize(model, Dynamic())
    ql.save(qm, tmp_path / "ck")
    loaded = ql.load(tmp_path / "ck", model=_fire_net())
    assert isinstance(loaded[4], DynamicConv2d) and loaded[4].groups == 8
    with torch.no_grad():
        assert torch.equal(loaded(x), qm(x))


def test_unknown_kind_lists_conv2d():
    with pytest.raises(ConfigError, match="conv2d"):
        Dynamic(modules=("conv3d",))
