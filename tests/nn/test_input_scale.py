"""An explicit input scale on QLinear and DynamicLinear: ``y = W' (x / s)``, in the config and
the state dict, folded back by ``to_float``, absent (and old configs loading) by default."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_similar, generator, random_tensor
from torch import nn

import quantlens as ql
from quantlens.errors import InputError
from quantlens.nn.dynamic_linear import DynamicLinear
from quantlens.nn.input_scale import input_scale_of, restore_input_scales, set_input_scale
from quantlens.nn.qlinear import QLinear

K, N = 64, 48
SCHEME = ql.QScheme(bits=4, symmetric=False, granularity="per_group", group_size=32)


def _scale() -> torch.Tensor:
    return torch.rand(K, generator=generator(3)) * 3 + 0.25


def _linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(K, N)


def _qlinear(scaled: bool) -> QLinear:
    lin = _linear()
    q = QLinear.from_float(lin, ql.quantize_tensor(lin.weight.detach(), SCHEME))
    q.kernel = "reference"
    if scaled:
        set_input_scale(q, _scale())
    return q


def test_qlinear_divides_its_input_by_the_scale():
    x = random_tensor((2, 5, K), seed=1)
    plain, scaled = _qlinear(False), _qlinear(True)
    assert plain.input_scale is None and "input_scale" not in plain.state_dict()
    with torch.no_grad():
        assert_similar(scaled(x), plain(x / _scale()), atol=1e-6, rtol=1e-6)
        assert not torch.allclose(scaled(x), plain(x), atol=1e-3)


def test_dynamic_linear_scales_before_quantizing_the_activations():
    lin = _linear()
    x = random_tensor((7, K), seed=2)
    plain = DynamicLinear.from_float(lin)
    scaled = DynamicLinear.from_float(lin)
    set_input_scale(scaled, _scale())
    plain.kernel = scaled.kernel = "reference"
    with torch.no_grad():
        # the same int8 codes of x / s: the division happens before the rounding
        assert torch.equal(scaled(x), plain(x / _scale()))


@pytest.mark.parametrize("cls", [QLinear, DynamicLinear])
def test_config_and_state_dict_carry_the_scale(cls):
    layer = _qlinear(True) if cls is QLinear else DynamicLinear.from_float(_linear())
    set_input_scale(layer, _scale())
    config = layer.config()
    assert config["input_scale"] is True
    empty = cls.from_config(config)
    empty.load_state_dict(layer.state_dict(), strict=True)
    assert torch.equal(empty.input_scale, _scale())
    old = {k: v for k, v in config.items() if k != "input_scale"}  # written before it existed
    assert cls.from_config(old).input_scale is None
    assert "input_scale" not in cls.from_config(old).config()


def test_to_float_folds_the_scale_back_into_the_weight():
    q = _qlinear(True)
    x = random_tensor((4, K), seed=4)
    with torch.no_grad():
        assert_similar(q.to_float()(x), q(x), atol=1e-5, rtol=1e-5)


def test_a_float_layer_built_from_a_scaled_linear_keeps_it():
    lin = _linear()
    lin.register_buffer("input_scale", _scale())
    q = QLinear.from_float(lin, ql.quantize_tensor(lin.weight.detach(), SCHEME))
    assert torch.equal(input_scale_of(q), _scale())


def test_restore_input_scales_makes_room_for_the_saved_ones():
    model = nn.Sequential(_qlinear(False), _qlinear(False))
    restore_input_scales(model, {"1": {"input_scale": True}, "0": {"bits": 4}})
    assert model[0].input_scale is None and torch.equal(model[1].input_scale, torch.ones(K))


@pytest.mark.parametrize("bad", [torch.ones(K + 1), -torch.ones(K), torch.zeros(K)])
def test_a_scale_that_does_not_fit_is_refused(bad):
    with pytest.raises(InputError, match="positive entries"):
        set_input_scale(_qlinear(False), bad)
