"""GPTQ's options: act-order, static groups, true-sequential (block by block, stage by stage)."""

import pytest
import torch
from helpers import generator
from torch import nn

import quantlens as ql
from quantlens.errors import ConfigError, SchemeError
from quantlens.methods.base import config_from_dict
from quantlens.methods.weight_only import WeightOnly
from quantlens.methods.weight_only.gptq import collect_hessians, gptq_quantize
from quantlens.methods.weight_only.hqq import hqq_quantize
from quantlens.methods.weight_only.sequential import quantize_sequentially


def _inputs(n=512, d=128, seed=0):
    g = generator(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5
    return (torch.randn(n, d, generator=g) * torch.logspace(-1, 1, d)) @ mix  # (n, d)


def _layer_case():
    torch.manual_seed(0)
    lin = nn.Linear(128, 64)
    x = _inputs()
    H = collect_hessians(nn.Sequential(lin), ["0"], x)["0"]
    scheme = WeightOnly(bits=4, group_size=32).scheme_for(lin.weight.shape)
    return lin.weight.detach(), x, H, scheme


def _output_error(x, w, qt) -> float:
    return ((x @ (qt.dequantize() - w).T) ** 2).mean().item()


def test_static_groups_take_hqq_scales_and_dynamic_ones_move():
    w, x, H, scheme = _layer_case()
    rtn, fitted = ql.quantize_tensor(w, scheme), hqq_quantize(w, scheme)
    for act_order in (True, False):
        static = gptq_quantize(w, H, scheme, act_order=act_order, static_groups=True)
        assert torch.equal(static.scale, fitted.scale) and torch.equal(
            static.zero_point, fitted.zero_point
        )
        assert _output_error(x, w, static) < 0.7 * _output_error(x, w, rtn)
    dynamic = gptq_quantize(w, H, scheme, act_order=False, static_groups=False)
    assert torch.equal(dynamic.scale[:, 0], rtn.scale[:, 0])  # the first group: nothing updated
    assert not torch.equal(dynamic.scale[:, 1:], rtn.scale[:, 1:])  # later: updated weights
    assert _output_error(x, w, dynamic) < 0.7 * _output_error(x, w, rtn)
    assert static.scale.shape == dynamic.scale.shape == (64, 4)  # plain group layout either way


def test_act_order_without_static_groups_is_refused():
    w, _, H, scheme = _layer_case()
    with pytest.raises(SchemeError, match="static_groups=True"):
        gptq_quantize(w, H, scheme, act_order=True, static_groups=False)
    with pytest.raises(ConfigError, match="static_groups=True"):
        WeightOnly(algorithm="gptq", act_order=True, static_groups=False)
    with pytest.raises(ConfigError, match="GPTQ options"):
        WeightOnly(algorithm="hqq", true_sequential=True)


def test_options_default_and_round_trip_through_json():
    assert WeightOnly(algorithm="gptq").static_groups is True
    cfg = WeightOnly(algorithm="gptq", act_order=False, true_sequential=True)
    assert cfg.static_groups is False
    assert config_from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in WeightOnly(algorithm="gptq").to_dict().items()}
    for key in ("act_order", "static_groups", "true_sequential"):
        old.pop(key)  # a config saved before the options existed: act-order with static groups
    assert config_from_dict(old) == WeightOnly(algorithm="gptq")


class Block(nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.q, self.k, self.o = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, scale=1.0):
        return x + self.o(torch.tanh(self.q(x)) * self.k(x)) * scale


class Net(nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.inp = nn.Linear(8, d)
        self.blocks = nn.ModuleList([Block(d), Block(d)])
        self.head = nn.Linear(d, 8)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, scale=0.5)
        return self.head(h)


def _net_case():
    torch.manual_seed(0)
    net = Net().eval()
    calib = [torch.randn(64, 8, generator=generator(i)) for i in range(2)]
    cfg = WeightOnly(bits=3, group_size=16, algorithm="gptq")
    return net, calib, cfg


def test_true_sequential_calibrates_each_stage_on_quantized_inputs():
    net, calib, cfg = _net_case()
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    modules = dict(net.named_modules())
    schemes = {n: cfg.scheme_for(modules[n].weight.shape) for n in names}

    def gptq_layer(name, weight, hessian):
        return gptq_quantize(weight, hessian, schemes[name], act_order=True)

    before = {k: v.clone() for k, v in net.state_dict().items()}
    done = quantize_sequentially(net, names, calib, gptq_layer)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # restored
    float_h = collect_hessians(net, names, calib)
    # "inp" runs before the blocks (outside them): its inputs are the data either way
    torch.testing.assert_close(done["inp"][0], float_h["inp"])
    for n in names[1:]:  # everything after it reads outputs of quantized layers
        assert not torch.allclose(done[n][0], float_h[n], rtol=1e-4), n
    # q and k read the same tensor: one stage, one Hessian
    torch.testing.assert_close(done["blocks.0.q"][0], done["blocks.0.k"][0])
    qt = done["blocks.0.q"][1]
    expected = gptq_quantize(
        modules["blocks.0.q"].weight,
        done["blocks.0.q"][0],
        schemes["blocks.0.q"],
        act_order=True,
    )
    assert torch.equal(qt.data, expected.data)


def test_true_sequential_model_is_closer_to_float_than_rtn_and_runs():
    net, calib, _ = _net_case()
    x = torch.randn(256, 8, generator=generator(9))
    with torch.no_grad():
        ref = net(x)
        errs = {}
        for label, c in {
            "rtn": WeightOnly(bits=3, group_size=16),
            "seq": WeightOnly(bits=3, group_size=16, algorithm="gptq", true_sequential=True),
        }.items():
            qm = ql.quantize(net, c, calib_data=calib)
            errs[label] = (qm(x) - ref).pow(2).mean().item()
    assert errs["seq"] < 0.8 * errs["rtn"]
