"""Dynamic int8 keeps an LSTM / GRU float where PyTorch's int8 RNN is slower (small hidden
sizes), records why, and quantizes larger ones; the choice survives save / load."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_similar, random_tensor
from torch import nn

import quantlens as ql
from quantlens import zoo
from quantlens.errors import ConfigError, NothingToQuantizeError
from quantlens.methods.base import config_from_dict
from quantlens.methods.dynamic import RNN_MIN_HIDDEN, Dynamic
from quantlens.nn.dynamic_linear import DynamicLinear
from quantlens.nn.dynamic_rnn import DynamicRNN


@pytest.mark.parametrize(
    "name,cls,least", [("digits-lstm", nn.LSTM, 384), ("digits-gru", nn.GRU, 128)]
)
def test_zoo_rnn_and_its_head_stay_float_and_the_error_says_why(name, cls, least):
    model = zoo.load_model(name)
    with pytest.raises(NothingToQuantizeError) as info:
        ql.quantize(model, Dynamic())
    text = str(info.value)
    assert "quantized nothing: int8 would be slower than float32 for every layer" in text
    assert f"rnn: hidden size 64 < {least}" in text and "fc: 10 output features < 64" in text
    assert "keep the float model for speed" in text and "\n" not in text
    assert "Dynamic(min_linear_out=0) and Dynamic(min_rnn_hidden=0) quantize them" in text


@pytest.mark.parametrize(
    "name,cls,least", [("digits-lstm", nn.LSTM, 384), ("digits-gru", nn.GRU, 128)]
)
def test_zoo_rnn_stays_float_with_the_reason_in_the_summary(name, cls, least):
    model = zoo.load_model(name)
    with pytest.warns(
        UserWarning,
        match=r"only 1 layer\(s\) \(fc\).*rnn: int8 would be slower.*keep the float model",
    ):
        qm = ql.quantize(model, Dynamic(min_linear_out=0))  # the head int8 on request
    assert type(qm.rnn) is cls and isinstance(qm.fc, DynamicLinear)
    summary = qm.quantlens_summary
    (record,) = [r for r in summary.records if r.name == "rnn"]
    assert record.action == "float"
    assert f"hidden size 64 < {least}" in record.reason and "int8 would be slower" in record.reason
    assert "min_rnn_hidden=0" in record.reason
    assert any(n.startswith("rnn left float because int8 would be slower") for n in summary.notes)
    assert [r.name for r in summary.quantized] == ["fc"]
    test = zoo.load_dataset("digits-seq", "test")
    with torch.inference_mode():
        ref, out = model(test.inputs), qm(test.inputs)
    assert_similar(out, ref, min_cosine=0.9999)  # only the 64x10 head is int8
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.99


def test_a_wide_rnn_is_int8_and_its_narrow_head_stays_float():
    from quantlens.zoo.models import DigitsRNN

    torch.manual_seed(0)
    model = DigitsRNN("gru", hidden=128, num_classes=10).eval()
    model.fc2 = nn.Linear(128, 64)  # as wide as the rule asks: int8
    qm = ql.quantize(model, Dynamic())
    assert isinstance(qm.rnn, DynamicRNN) and type(qm.fc) is nn.Linear
    assert isinstance(qm.fc2, DynamicLinear)
    (record,) = [r for r in qm.quantlens_summary.records if r.name == "fc"]
    assert record.action == "float" and record.reason.startswith(
        "int8 would be slower: 10 output features < 64"
    )
    assert "min_linear_out=0" in record.reason
    assert not qm.quantlens_summary.notes  # a head left float does not outweigh the int8 GRU
    assert torch.equal(qm.fc.weight, model.fc.weight)
    with torch.inference_mode():
        assert_similar(
            qm(random_tensor(3, 8, 8, seed=2)),
            model(random_tensor(3, 8, 8, seed=2)),
            min_cosine=0.999,
        )
    assert isinstance(ql.quantize(model, Dynamic(min_linear_out=0)).fc, DynamicLinear)
    assert type(ql.quantize(model, Dynamic(min_linear_out=65)).fc2) is nn.Linear


def test_the_head_rule_leaves_models_without_rnn_alone():
    qm = ql.quantize(nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)), Dynamic())
    assert all(isinstance(qm[i], DynamicLinear) for i in (0, 2))
    with pytest.raises(NothingToQuantizeError, match="2 output features < 64"):
        ql.quantize(nn.Linear(16, 2), Dynamic(min_linear_out=64))
    assert isinstance(
        ql.quantize(nn.Linear(16, 2), Dynamic(dtype="float16", min_linear_out=64)), DynamicLinear
    )  # fp16 weights: a size saving, no speed claim


@pytest.mark.parametrize(
    "cls,hidden", [(nn.LSTM, RNN_MIN_HIDDEN["lstm"]), (nn.GRU, RNN_MIN_HIDDEN["gru"])]
)
def test_rnn_at_the_threshold_is_int8_and_close_to_float(cls, hidden):
    torch.manual_seed(0)
    rnn = cls(32, hidden, batch_first=True).eval()
    qm = ql.quantize(rnn, Dynamic())
    assert isinstance(qm, DynamicRNN) and qm.quantlens_summary.quantized[0].name == "(model)"
    x = random_tensor(4, 6, 32, seed=1)
    with torch.inference_mode():
        assert_similar(qm(x)[0], rnn(x)[0], min_cosine=0.999)
    with pytest.raises(
        NothingToQuantizeError,
        match=rf"int8 would be slower.*\(\(model\): hidden size {hidden - 1} <.*"
        r"\(Dynamic\(min_rnn_hidden=0\) quantizes it anyway\)",
    ):
        ql.quantize(
            cls(32, hidden - 1, batch_first=True), Dynamic()
        )  # a bare layer: nothing worth quantizing


def test_min_rnn_hidden_moves_the_threshold_and_fp16_is_always_converted():
    lstm = nn.LSTM(8, 16)
    assert isinstance(ql.quantize(lstm, Dynamic(min_rnn_hidden=16)), DynamicRNN)
    with pytest.raises(NothingToQuantizeError, match="hidden size 16 < 17"):
        ql.quantize(lstm, Dynamic(min_rnn_hidden=17))
    assert isinstance(
        ql.quantize(lstm, Dynamic(dtype="float16")), DynamicRNN
    )  # a size saving, no speed claim


def test_default_choice_round_trips_through_a_checkpoint(tmp_path):
    with pytest.warns(UserWarning, match="keep the float model for speed"):
        qm = ql.quantize(zoo.load_model("digits-lstm"), Dynamic(min_linear_out=0))
    ql.save(qm, tmp_path / "lstm")
    loaded = ql.load(tmp_path / "lstm")
    assert type(loaded.rnn) is nn.LSTM and isinstance(loaded.fc, DynamicLinear)
    x = zoo.load_dataset("digits-seq", "test").inputs[:32]
    with torch.inference_mode():
        assert torch.equal(loaded(x), qm(x))


def test_min_rnn_hidden_config_round_trip_and_errors():
    cfg = Dynamic(min_rnn_hidden=0, min_linear_out=32)
    assert config_from_dict(cfg.to_dict()) == cfg
    for field in ("min_rnn_hidden", "min_linear_out"):
        for bad in (-1, 1.5, True, "64"):
            with pytest.raises(ConfigError, match=f"{field} must be None or an integer >= 0"):
                Dynamic(**{field: bad})


def test_a_config_saved_before_min_rnn_hidden_existed_loads_as_int8_rnn(tmp_path):
    import json

    qm = ql.quantize(zoo.load_model("digits-gru"), Dynamic(min_rnn_hidden=0))
    ql.save(qm, tmp_path / "old")
    meta_path = tmp_path / "old" / "quantlens.json"
    meta = json.loads(meta_path.read_text())
    text = json.dumps(meta)
    assert '"min_rnn_hidden": 0' in text
    meta_path.write_text(
        text.replace('"min_rnn_hidden": 0, ', "").replace(', "min_rnn_hidden": 0', "")
    )
    assert "min_rnn_hidden" not in meta_path.read_text()
    loaded = ql.load(tmp_path / "old")
    assert isinstance(loaded.rnn, DynamicRNN)
    x = zoo.load_dataset("digits-seq", "test").inputs[:16]
    with torch.inference_mode():
        assert torch.equal(loaded(x), qm(x))
    old = config_from_dict({"method": "dynamic"})
    assert old.min_rnn_hidden == 0 and old.min_linear_out == 0
