"""What ``ql.load`` runs to rebuild a skeleton: Hugging Face configs and zoo names without
opt-in, any ``module:function`` only with ``trust_code=True``; and every way quantlens.json
can be wrong ends in a CheckpointError naming the file."""

import json

import pytest
import torch
from torch import nn

import quantlens as ql
from quantlens.errors import CheckpointError
from quantlens.methods.weight_only import WeightOnly
from quantlens.nn import QLinear


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16)).eval()


def _save(tmp_path, *, source=None, name="ckpt"):
    return ql.save(
        ql.quantize(_mlp(), WeightOnly(bits=4, group_size=32)), tmp_path / name, source=source
    )


def _edit(ckpt, change) -> None:
    path = ckpt / "quantlens.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_a_factory_that_would_run_a_local_python_file_is_refused(tmp_path, monkeypatch):
    dynamic = pytest.importorskip("transformers.dynamic_module_utils")
    modules_cache = tmp_path / "hf_modules"  # where transformers would copy and import the file
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(modules_cache))
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "code-ran"
    (evil / "payload.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nclass Payload:\n    pass\n"
    )
    ckpt = _save(tmp_path)
    _edit(
        ckpt,
        lambda m: m.update(
            source={
                "kind": "factory",
                "path": "transformers.dynamic_module_utils:get_class_from_dynamic_module",
                "kwargs": {
                    "class_reference": "payload.Payload",
                    "pretrained_model_name_or_path": str(evil),
                    "local_files_only": True,
                },
            }
        ),
    )
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(
        CheckpointError, match=r"quantlens\.json rebuilds its model by calling .*trust_code=True"
    ):
        ql.load(ckpt)
    assert not marker.exists() and not modules_cache.exists()
    assert (
        sorted(p.name for p in tmp_path.rglob("*")) == before
    )  # nothing written anywhere under tmp_path


def test_every_factory_path_needs_trust_even_inside_quantlens(tmp_path):
    source = {"kind": "factory", "path": "quantlens.zoo.models:DigitsCNN", "kwargs": {}}
    model = ql.quantize(ql.zoo.load_model("digits-cnn"), WeightOnly(bits=8, group_size=None))
    ckpt = ql.save(model, tmp_path / "c", source=source)
    with pytest.raises(CheckpointError, match="trust_code=True"):
        ql.load(ckpt)
    x = ql.zoo.example_inputs("digits-cnn")[0]
    assert torch.equal(ql.load(ckpt, trust_code=True)(x), model(x))


def test_a_trusted_factory_gets_its_keyword_arguments(tmp_path):
    torch.manual_seed(0)
    lin = nn.Linear(64, 8)
    source = {
        "kind": "factory",
        "path": "torch.nn:Linear",
        "kwargs": {"in_features": 64, "out_features": 8},
    }
    qm = ql.quantize(lin, WeightOnly(bits=4, group_size=32))
    loaded = ql.load(ql.save(qm, tmp_path / "c", source=source), trust_code=True)
    x = torch.randn(3, 64)
    assert isinstance(loaded, QLinear) and torch.equal(loaded(x), qm(x))


def test_a_zoo_source_rebuilds_without_trust_and_ignores_the_recorded_path(tmp_path):
    model = ql.zoo.load_model("digits-cnn")
    qm = ql.quantize(model, WeightOnly(bits=8, group_size=None))
    ckpt = ql.save(qm, tmp_path / "z")
    _edit(ckpt, lambda m: m["source"].update(path="os:system", kwargs={"command": "exit 3"}))
    x = ql.zoo.example_inputs("digits-cnn")[0]
    assert torch.equal(ql.load(ckpt)(x), qm(x))


def _no_state(meta):
    del meta["state"]
    return r"quantlens\.json has no 'state' entry"


def _newer_config(meta):
    meta["config"]["version"] = 2
    return r"quantlens\.json: its 'config' cannot be used: config version 2 is newer"


def _unknown_zoo_name(meta):
    meta["source"] = {"zoo": "no-such-net", "kind": "factory", "path": "quantlens.zoo:load_model"}
    return r"quantlens\.json names zoo model 'no-such-net'"


def _factory_returns_no_module(meta):
    meta["source"] = {"kind": "factory", "path": "collections:OrderedDict", "kwargs": {}}
    return r"quantlens\.json: rebuilding the model gave a OrderedDict, not a torch\.nn\.Module"


def _factory_raises(meta):
    meta["source"] = {"kind": "factory", "path": "torch.nn:Conv2d", "kwargs": {}}
    return r"quantlens\.json: calling the model factory 'torch\.nn:Conv2d' failed \(TypeError"


def _malformed_state_entry(meta):
    meta["state"]["0.scale"] = {"no": "kind"}
    return r"quantlens\.json: state entry '0\.scale' is malformed"


@pytest.mark.parametrize(
    "breaker",
    [
        _no_state,
        _newer_config,
        _unknown_zoo_name,
        _factory_returns_no_module,
        _factory_raises,
        _malformed_state_entry,
    ],
)
def test_broken_descriptions_raise_checkpoint_error_naming_the_file(tmp_path, breaker):
    ckpt = _save(tmp_path)
    words = []
    _edit(ckpt, lambda m: words.append(breaker(m)))
    with pytest.raises(CheckpointError, match=words[0]) as info:
        ql.load(
            ckpt,
            model=_mlp() if breaker in (_no_state, _newer_config, _malformed_state_entry) else None,
            trust_code=True,
        )
    assert str(ckpt / "quantlens.json") in str(info.value)


def _hf_source(meta, **change):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=128,
        vocab_size=100,
    ).to_dict()
    meta["source"] = {"kind": "hf", "class": "BertModel", "config": config}
    for key, value in change.items():
        (meta["source"]["config"] if key == "model_type" else meta["source"])[key] = value


@pytest.mark.parametrize(
    "change, words",
    [
        (
            {"model_type": "no-such-architecture"},
            "cannot build a config of model_type 'no-such-architecture'",
        ),
        ({"class": "pipeline"}, "'pipeline' is not a model class of this transformers"),
        ({"class": "AutoModel"}, "'AutoModel' is not a model class of this transformers"),
    ],
)
def test_hugging_face_sources_only_build_model_classes_from_a_config(tmp_path, change, words):
    ckpt = _save(tmp_path)
    _edit(ckpt, lambda m: _hf_source(m, **change))
    with pytest.raises(CheckpointError, match=words) as info:
        ql.load(ckpt)
    assert str(ckpt / "quantlens.json") in str(info.value)


def test_model_must_be_a_module(tmp_path):
    with pytest.raises(ql.QuantlensError, match="torch.nn.Module skeleton"):
        ql.load(_save(tmp_path), model="not a model")
