"""Static / QAT int8 models: save/load bit-identical without pickle, TorchScript export,
BatchNorm folding (Conv and Linear) against the unfused model, custom modules and hybrid
configs (a Static conv trunk with Dynamic LSTM / Linear layers)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from helpers import generator, torch_threads
from int8_helpers import GatedNet, seeded
from torch import nn

import quantlens as ql
from quantlens import zoo
from quantlens.methods import fusion
from quantlens.nn.dynamic_linear import DynamicLinear
from quantlens.nn.dynamic_rnn import DynamicRNN


@pytest.fixture
def no_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("ql.load must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_static_save_load_is_bit_identical_without_pickle(digits_cnn, digits, tmp_path, no_pickle):
    qm = ql.quantize(
        digits_cnn, ql.Static(observer="minmax"), calib_data=digits["calib"].batches(64)
    )
    ql.save(qm, tmp_path / "static")
    loaded = ql.load(tmp_path / "static")  # the zoo model records how to rebuild its skeleton
    x = digits["test"].inputs
    assert torch.equal(loaded(x), qm(x))
    assert loaded.quantlens_config == qm.quantlens_config


@pytest.mark.parametrize("bits", [8, 4])
def test_qat_save_load_is_bit_identical(digits_cnn, digits, tmp_path, no_pickle, bits):
    qat = ql.prepare_qat(digits_cnn, ql.QAT(bits=bits))
    ql.train_qat(qat, digits["train"].batches(64)[:4], epochs=1, lr=1e-4)
    qm = ql.convert(qat)
    ql.save(qm, tmp_path / "qat")
    loaded = ql.load(tmp_path / "qat")
    assert loaded.quantlens_config == ql.QAT(bits=bits)
    x = digits["test"].inputs
    assert torch.equal(loaded(x), qm(x))
    weights = [
        m.weight().int_repr() for m in loaded.modules() if callable(getattr(m, "weight", None))
    ]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1  # 4 bits: codes in [-8, 7]
    assert len(weights) == 7 and all(lo <= int(w.min()) and int(w.max()) <= hi for w in weights)
    assert all(int(w.abs().max()) > 0 for w in weights)
    assert bits != 8 or max(int(w.abs().max()) for w in weights) > 8  # 8 bits use more than 4


def test_float_island_model_round_trips_with_a_given_skeleton(digits, tmp_path):
    model = seeded(GatedNet)
    qm = ql.quantize(
        model, ql.Static(observer="minmax", skip=["fc"]), calib_data=digits["calib"].batches(64)
    )
    ql.save(qm, tmp_path / "gated")
    loaded = ql.load(tmp_path / "gated", model=GatedNet())
    x = digits["test"].inputs[:64]
    assert torch.equal(loaded(x), qm(x))


def test_torchscript_export_loads_and_matches(digits_cnn, digits, tmp_path):
    qm = ql.quantize(
        digits_cnn, ql.Static(observer="minmax"), calib_data=digits["calib"].batches(64)
    )
    path = ql.export(qm, tmp_path / "digits.pt", format="torchscript")
    scripted = torch.jit.load(str(path))
    x = digits["test"].inputs
    assert torch.equal(scripted(x), qm(x))


def _randomize_bn(model: nn.Module) -> nn.Module:
    gen = generator(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


def _randomize_bn1d(model: nn.Module) -> nn.Module:
    gen = generator(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


class LinearBNNet(nn.Module):
    """Linear-BN-ReLU and Linear-BN blocks over the flattened 8x8 digit, a Linear head."""

    def __init__(self):
        super().__init__()
        self.fc1, self.bn1, self.relu = nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU()
        self.fc2, self.bn2 = nn.Linear(32, 16), nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.fc1(torch.flatten(x, 1))))
        return self.head(self.bn2(self.fc2(x)))


def test_linear_bn_relu_fusion_matches_the_unfused_model(digits):
    model = _randomize_bn1d(seeded(LinearBNNet))
    x = digits["test"].inputs
    with torch.no_grad():
        ref = model(x)
    tol = 1e-5 * max(1.0, ref.abs().max().item())
    folded = copy.deepcopy(model)  # the eager path's folding
    assert fusion.fold_batchnorms(folded) == [("fc1", "bn1"), ("fc2", "bn2")]
    # graph mode: the observed model (observers pass values through) is the fused float model
    observed = ql.prepare(model, ql.Static(observer="minmax"), example_inputs=(x[:2],))
    assert not any(isinstance(m, nn.BatchNorm1d) for m in observed.modules())
    with torch.no_grad():
        assert (folded(x) - ref).abs().max() <= tol
        assert (observed(x) - ref).abs().max() <= tol
    qm = ql.quantize(model, ql.Static(observer="minmax"), calib_data=digits["calib"].batches(64))
    assert {r.name for r in qm.quantlens_summary.quantized} == {"fc1", "fc2", "head"}
    assert not any(isinstance(m, nn.BatchNorm1d) for m in qm.modules())
    with torch.no_grad():
        assert torch.nn.functional.cosine_similarity(qm(x), ref, dim=-1).mean() > 0.99


@pytest.mark.parametrize("name,shape", [("digits-cnn", (8, 1, 8, 8)), ("resnet18", (2, 3, 64, 64))])
def test_batchnorm_folding_matches_the_unfused_model(name, shape):
    model = _randomize_bn(zoo.load_model(name))
    folded = _randomize_bn(zoo.load_model(name))
    pairs = fusion.fold_batchnorms(folded)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(pairs) == n_bn and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(*shape, generator=generator(1))
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert (out - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_fold_bn_params_is_the_tutorial_formula():
    bn = nn.BatchNorm1d(3).eval()
    bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
    bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    bn.weight.data.copy_(torch.tensor([2.0, 1.0, -1.0]))
    bn.bias.data.copy_(torch.tensor([0.1, 0.2, 0.3]))
    w, b = torch.ones(3, 2), torch.tensor([1.0, 0.0, -1.0])
    wf, bf = fusion.fold_bn_params(w, b, bn)
    factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(wf, w * factor[:, None])
    assert torch.allclose(bf, (b - bn.running_mean) * factor + bn.bias)
    with pytest.raises(ql.QuantlensError, match="eval mode"):
        fusion.fold_batchnorms(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)).train())


# --- custom module hook --------------------------------------------------------------------


class Clip(nn.Module):
    def forward(self, x):
        return x.clamp(0.0, 1.0)


class ObservedClip(Clip):
    @classmethod
    def from_float(cls, module):
        return cls()


class QuantizedClip(nn.Module):
    calls = 0

    def forward(self, x):
        assert x.is_quantized  # runs between quantized neighbours, no DeQuant/Quant around it
        QuantizedClip.calls += 1
        return x.clamp(0.0, 1.0)

    @classmethod
    def from_observed(cls, module):
        return cls()


class ClipNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.clip = Clip()
        self.fc = nn.Linear(4 * 64, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.clip(self.conv(x)), 1))


def test_registered_custom_module_replacement_is_used(digits):
    ql.register_custom_module(Clip, ObservedClip, QuantizedClip)
    try:
        model = seeded(ClipNet)
        qm = ql.quantize(
            model, ql.Static(observer="minmax"), calib_data=digits["calib"].batches(64)
        )
    finally:
        from quantlens.methods.int8_graph import unregister_custom_module

        unregister_custom_module(Clip)
    assert isinstance(qm.clip, QuantizedClip)
    x = digits["test"].inputs[:16]
    before = QuantizedClip.calls
    out = qm(x)
    assert QuantizedClip.calls == before + 1
    assert (out - model(x)).abs().max() < 0.1 * model(x).abs().max()


def test_overrides_mix_static_trunk_with_a_dynamic_head(digits_cnn, digits):
    config = ql.Static(observer="minmax", overrides={"fc": ql.Dynamic()})
    qm = ql.quantize(digits_cnn, config, calib_data=digits["calib"].batches(64))
    methods = {r.name: r.method for r in qm.quantlens_summary.quantized}
    assert methods.get("stem.0") == "static" and methods.get("fc") == "dynamic"
    x = digits["test"].inputs
    assert (qm(x).argmax(1) == digits["test"].labels).float().mean() > 0.97


def test_a_layer_skipped_under_static_and_weight_only_is_recorded_once(digits):
    model = nn.Sequential(nn.Flatten(), *[nn.Linear(64, 64) for _ in range(4)])
    config = ql.Static(
        observer="minmax", skip=("4",), overrides={"1": ql.WeightOnly(bits=8, group_size=None)}
    )
    summary = ql.quantize(model, config, calib_data=digits["calib"].batches(64)).quantlens_summary
    assert [r.name for r in summary.skipped if r.kind == "Linear"] == ["4"]


class ConvLSTM(nn.Module):
    """A Conv-BN-ReLU trunk over the 8x8 digit; its 8 rows (8 channels x 8 columns each) are
    the time steps of an LSTM; the last hidden state goes through a Linear head."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.rnn = nn.LSTM(64, 32, batch_first=True)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):  # (B, 1, 8, 8)
        f = self.relu(self.bn(self.conv(x)))  # (B, C=8, H=8, W=8)
        out, _ = self.rnn(f.permute(0, 2, 1, 3).flatten(2))  # (B, T=8, C*W=64) -> (B, T, 32)
        return self.fc(out[:, -1])  # (B, 10)


@pytest.fixture(scope="module")
def conv_lstm(digits):
    """ConvLSTM trained for a few epochs on the digits training split."""
    with torch.random.fork_rng(devices=[]), torch_threads(1):
        torch.manual_seed(0)
        model = ConvLSTM()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x, y = digits["train"].inputs, digits["train"].labels
        for _ in range(8):
            order = torch.randperm(len(x))
            for i in range(0, len(x), 64):
                idx = order[i : i + 64]
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.eval()


def test_static_conv_trunk_with_a_dynamic_lstm_head_quantizes_saves_and_loads(
    conv_lstm, digits, tmp_path
):
    config = ql.Static(
        observer="minmax",
        overrides={
            "rnn": ql.Dynamic(min_rnn_hidden=0),
            "fc": ql.Dynamic(min_linear_out=0),
        },
    )
    qm = ql.quantize(conv_lstm, config, calib_data=digits["calib"].batches(64))
    methods = {r.name: r.method for r in qm.quantlens_summary.quantized}
    assert methods == {"conv": "static", "rnn": "dynamic", "fc": "dynamic"}
    assert isinstance(qm.rnn, DynamicRNN) and isinstance(qm.fc, DynamicLinear)
    x, labels = digits["test"].inputs, digits["test"].labels
    with torch.no_grad():
        ref, out = conv_lstm(x), qm(x)
    float_acc, q_acc = ((t.argmax(1) == labels).float().mean().item() for t in (ref, out))
    assert float_acc >= 0.95 and float_acc - q_acc <= 0.01
    assert torch.nn.functional.cosine_similarity(out, ref, dim=-1).mean() > 0.999
    ql.save(qm, tmp_path / "hybrid")
    loaded = ql.load(tmp_path / "hybrid", model=ConvLSTM())
    assert isinstance(loaded.rnn, DynamicRNN) and isinstance(loaded.fc, DynamicLinear)
    with torch.no_grad():
        assert torch.equal(loaded(x), out)
