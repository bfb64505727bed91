"""ql.quantize(model, Dynamic(...)): MiniLM and the zoo LSTM/GRU on real data, bare layers,
summaries and warnings, checkpoints."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_similar
from torch import nn

import quantlens as ql
from quantlens import zoo
from quantlens.errors import ConfigError
from quantlens.methods.base import config_from_dict
from quantlens.methods.dynamic import Dynamic
from quantlens.nn.dynamic_linear import DynamicLinear
from quantlens.nn.dynamic_rnn import DynamicRNN

pytestmark = pytest.mark.usefixtures("two_threads")


# --- MiniLM ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("transformers")
    from quantlens.zoo.minilm import mean_pooled_embeddings

    model = zoo.load_model("minilm")
    sentences = zoo.load_dataset("sentences")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a transformer is not a "changes little" case
        qm = ql.quantize(model, Dynamic())
    return model, qm, sentences, mean_pooled_embeddings


@pytest.mark.slow  # each MiniLM test pays for loading and quantizing it once per worker
def test_minilm_int8_embeddings_within_cosine_0_995(minilm):
    from quantlens.zoo.minilm import mean_cosine

    model, qm, sentences, embed = minilm
    assert len(sentences) >= 200
    ref = embed(model, sentences.batches(64))
    emb = embed(qm, sentences.batches(64))
    assert mean_cosine(ref, emb) >= 0.995
    assert F.cosine_similarity(ref, emb, dim=-1).min() > 0.98


@pytest.mark.slow
def test_minilm_summary_and_structure(minilm):
    _, qm, _, _ = minilm
    summary = qm.quantlens_summary
    assert len(summary.quantized) == 37  # 6 layers x 6 Linear + the pooler
    assert all(r.kind == "Linear" and "per-token" in r.detail for r in summary.quantized)
    assert {r.kind for r in summary.skipped} == {"Embedding", "LayerNorm"}
    before = sum(r.bytes_before for r in summary.quantized)
    after = sum(r.bytes_after for r in summary.quantized)
    assert 3.8 < before / after < 4.0
    assert isinstance(qm.encoder.layer[0].intermediate.dense, DynamicLinear)


@pytest.mark.slow
def test_minilm_save_load_bit_identical(minilm, tmp_path):
    _, qm, sentences, embed = minilm
    few = sentences.batches(16)[:1]
    ql.save(qm, tmp_path / "minilm")
    loaded = ql.load(tmp_path / "minilm")
    assert isinstance(loaded.encoder.layer[5].output.dense, DynamicLinear)
    assert torch.equal(embed(loaded, few), embed(qm, few))


# --- recurrent models (zoo, trained on real digits) -----------------------------------------


@pytest.mark.parametrize("name", ["digits-lstm", "digits-gru"])
def test_zoo_rnn_within_cosine_0_99_and_keeps_accuracy(name):
    model = zoo.load_model(name)
    test = zoo.load_dataset("digits-seq", "test")
    qm = ql.quantize(
        model, Dynamic(min_rnn_hidden=0, min_linear_out=0)
    )  # int8 even where it is slower
    assert isinstance(qm.rnn, DynamicRNN) and isinstance(qm.fc, DynamicLinear)
    with torch.inference_mode():
        ref, out = model(test.inputs), qm(test.inputs)
    assert F.cosine_similarity(ref, out, dim=-1).mean() >= 0.99
    acc_ref = (ref.argmax(1) == test.labels).float().mean().item()
    acc_q = (out.argmax(1) == test.labels).float().mean().item()
    assert acc_ref > 0.95 and acc_q >= acc_ref - 0.01


def test_lstm_save_load_bit_identical_from_zoo_source(tmp_path):
    qm = ql.quantize(zoo.load_model("digits-lstm"), Dynamic(min_rnn_hidden=0))
    x = zoo.load_dataset("digits-seq", "test").inputs[:64]
    ql.save(qm, tmp_path / "lstm")
    loaded = ql.load(tmp_path / "lstm")  # rebuilt from the zoo name, no skeleton passed
    with torch.inference_mode():
        assert torch.equal(loaded(x), qm(x))


def test_lstm_state_dict_is_plain_tensors():
    qm = ql.quantize(zoo.load_model("digits-lstm"), Dynamic(min_rnn_hidden=0))
    state = qm.state_dict()
    assert all(isinstance(v, torch.Tensor) and not v.is_quantized for v in state.values())
    assert state["rnn.weight_ih_l0"].dtype == torch.int8
    assert state["rnn.weight_ih_l0_scale"].shape == (4 * 64,)


# --- a bare layer as the whole model ---------------------------------------------------------


def test_bare_linear_is_quantized_and_round_trips(tmp_path):
    lin = nn.Linear(32, 16)
    qm = ql.quantize(lin, Dynamic())
    assert isinstance(qm, DynamicLinear) and qm.quantlens_summary.quantized[0].name == "(model)"
    x = torch.randn(4, 32)
    assert ((qm(x) - lin(x)).norm() / lin(x).norm()) < 0.03
    ql.save(qm, tmp_path / "lin")
    loaded = ql.load(tmp_path / "lin", model=nn.Linear(32, 16))
    assert torch.equal(loaded(x), qm(x))


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_bare_bidirectional_two_layer_rnn_round_trips(cls, tmp_path):
    torch.manual_seed(0)
    rnn = cls(8, 16, num_layers=2, bidirectional=True)
    qm = ql.quantize(rnn, Dynamic(min_rnn_hidden=0))
    assert isinstance(qm, DynamicRNN)
    x = torch.randn(5, 3, 8)
    out, ref = qm(x)[0], rnn(x)[0]
    assert out.shape == ref.shape == (5, 3, 32)
    assert_similar(out, ref, min_cosine=0.99)
    ql.save(qm, tmp_path / "rnn")
    loaded = ql.load(tmp_path / "rnn", model=cls(8, 16, num_layers=2, bidirectional=True))
    assert torch.equal(loaded(x)[0], out)


# --- selection, fp16, warnings, configs ------------------------------------------------------


def test_modules_skip_and_overrides_select_layers():
    model = zoo.load_model("digits-lstm")
    only_rnn = ql.quantize(model, Dynamic(modules=("lstm",), min_rnn_hidden=0))
    assert isinstance(only_rnn.rnn, DynamicRNN) and type(only_rnn.fc) is nn.Linear
    assert any(r.name == "fc" and "modules" in r.reason for r in only_rnn.quantlens_summary.skipped)
    skipped = ql.quantize(model, Dynamic(skip=("rnn",), min_linear_out=0))
    assert type(skipped.rnn) is nn.LSTM and isinstance(skipped.fc, DynamicLinear)
    assert any(r.name == "rnn" and r.action == "skipped" for r in skipped.quantlens_summary.records)
    mixed = ql.quantize(
        model, Dynamic(min_rnn_hidden=0, overrides={"fc": Dynamic(dtype="float16")})
    )
    assert mixed.fc.dtype == "float16" and mixed.rnn.dtype == "int8"


def test_a_skipped_layer_is_recorded_once_when_methods_are_mixed():
    model = nn.Sequential(*[nn.Linear(16, 16) for _ in range(4)])
    config = Dynamic(skip=("3",), overrides={"0": ql.WeightOnly(bits=8, group_size=None)})
    summary = ql.quantize(model, config).quantlens_summary
    assert [r.name for r in summary.skipped] == ["3"]
    assert str(summary).splitlines()[0] == "quantized 3 layer(s), left 1 in float"


def test_float16_weights(tmp_path):
    model = zoo.load_model("digits-lstm")
    qm = ql.quantize(model, Dynamic(dtype="float16"))
    x = zoo.load_dataset("digits-seq", "test").inputs[:32]
    with torch.inference_mode():
        assert_similar(qm(x), model(x), atol=1e-2, rtol=1e-2)
    assert qm.state_dict()["fc.weight"].dtype == torch.float16
    assert qm.state_dict()["rnn.weight_ih_l0"].dtype == torch.float16
    ql.save(qm, tmp_path / "fp16")
    with torch.inference_mode():
        assert torch.equal(ql.load(tmp_path / "fp16")(x), qm(x))


def test_cnn_warns_that_dynamic_changes_little_and_suggests_static():
    with pytest.warns(UserWarning, match=r"ql\.Static"):
        qm = ql.quantize(zoo.load_model("digits-cnn"), Dynamic())
    summary = qm.quantlens_summary
    assert [r.name for r in summary.quantized] == ["fc"]
    assert any("ql.Static" in n for n in summary.notes)
    assert any(
        r.kind == "Conv2d" and "ql.Static" in r.reason and "conv2d" in r.reason
        for r in summary.skipped
    )


def test_rebuild_gives_the_quantized_structure():
    from quantlens.methods.base import QuantContext, QuantSummary
    from quantlens.methods.dynamic import rebuild

    skeleton = zoo.load_model("digits-lstm", pretrained=False)
    for config in (Dynamic(min_rnn_hidden=0), Dynamic(min_linear_out=0)):
        rebuilt = rebuild(copy.deepcopy(skeleton), QuantContext(config, QuantSummary()))
        assert isinstance(rebuilt.fc, DynamicLinear if config.min_linear_out == 0 else nn.Linear)
        assert isinstance(rebuilt.rnn, DynamicRNN if config.min_rnn_hidden == 0 else nn.LSTM)
        assert set(rebuilt.state_dict()) == set(
            ql.quantize(zoo.load_model("digits-lstm"), config).state_dict()
        )


def test_config_round_trip_and_errors():
    cfg = Dynamic(dtype="float16", modules=("linear",), activations="per_tensor", skip=("fc",))
    assert config_from_dict(cfg.to_dict()) == cfg
    assert Dynamic(modules="lstm").modules == ("lstm",)
    with pytest.raises(ConfigError, match="int8"):
        Dynamic(dtype="int4")
    with pytest.raises(ConfigError, match="linear"):
        Dynamic(modules=("conv",))
    with pytest.raises(ConfigError, match="per_token"):
        Dynamic(activations="per_row")


@pytest.mark.parametrize(
    "dtype, name", [(torch.float16, "float16"), (torch.int8, "int8"), (torch.qint8, "int8")]
)
def test_torch_dtypes_are_taken_like_their_names(dtype, name):
    config = Dynamic(dtype=dtype)
    assert config.dtype == name and config_from_dict(config.to_dict()) == config
    lin = nn.Sequential(nn.Linear(16, 8))
    qm = ql.quantize(lin, config)
    assert qm[0].dtype == name


def test_backend_is_validated_and_sets_the_engine():
    with pytest.raises(ConfigError, match="unknown backend 'cuda'"):
        Dynamic(backend="cuda")
    with pytest.raises(ConfigError, match="torch.int8 or torch.float16"):
        Dynamic(dtype=torch.float32)
    engines = [
        e
        for e in torch.backends.quantized.supported_engines
        if e in ("qnnpack", "x86", "fbgemm", "onednn")
    ]
    before = torch.backends.quantized.engine
    try:
        for engine in engines:
            config = Dynamic(backend=engine)
            assert config_from_dict(config.to_dict()) == config
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
            qm = ql.quantize(model, config)
            assert torch.backends.quantized.engine == engine
            x = torch.randn(3, 32)
            assert_similar(qm(x), model(x), min_cosine=0.99)
    finally:
        torch.backends.quantized.engine = before
