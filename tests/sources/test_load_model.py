"""ql.load_model / ql.resolve_model: every spec form, what it says about the model, and the
errors (unknown spec, code that would run untrusted, a missing extra)."""

import json
import sys
import zipfile

import pytest
import torch
from torch import nn

import quantlens as ql
from quantlens import zoo
from quantlens.errors import (
    CheckpointError,
    InputError,
    MissingDependencyError,
    UnknownNameError,
    UntrustedCodeError,
)
from quantlens.eval.size import save_for_size
from quantlens.sources import ModelForm, is_factory_spec, register_model_form, resolve_model
from quantlens.sources import models as sources_models

X = zoo.example_inputs("digits-cnn")[0]  # two real digit images


def make_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


FACTORY = f"{__name__}:make_mlp"


def _same(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def test_a_zoo_name_gives_the_trained_model_and_its_data_set():
    source = resolve_model("digits-cnn")
    assert (source.kind, source.zoo, source.data, source.spec) == (
        "zoo",
        "digits-cnn",
        "digits",
        "digits-cnn",
    )
    assert not source.model.training
    assert _same(source.model, zoo.load_model("digits-cnn"), X)
    assert source.float_source() is source


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    """A weight-only checkpoint of digits-cnn and the model that was saved."""
    qm = ql.quantize(zoo.load_model("digits-cnn"), ql.WeightOnly(bits=8, group_size=None))
    return ql.save(qm, tmp_path_factory.mktemp("ckpt") / "w8"), qm


def test_a_checkpoint_folder_loads_as_ql_load_does(digits_checkpoint):
    folder, saved = digits_checkpoint
    source = resolve_model(folder)
    assert (source.kind, source.zoo, source.data) == ("checkpoint", None, "digits")
    assert _same(source.model, saved, X)
    float_source = source.float_source()
    assert (float_source.kind, float_source.zoo) == ("zoo", "digits-cnn")
    assert _same(float_source.model, zoo.load_model("digits-cnn"), X)


def test_a_float_folder_rebuilds_the_model_with_its_weights(tmp_path):
    model = zoo.load_model("digits-cnn")
    folder = save_for_size(model, tmp_path / "float")
    source = resolve_model(folder)
    assert (source.kind, source.data) == ("float", "digits")
    assert _same(source.model, model, X)


def test_a_factory_runs_only_when_trusted():
    with pytest.raises(UntrustedCodeError, match=r"make_mlp builds its model .*trust_code=True"):
        ql.load_model(FACTORY)
    source = resolve_model(FACTORY, trust_code=True)
    assert (source.kind, source.zoo, source.data) == ("factory", None, None)
    assert _same(source.model, make_mlp(), torch.ones(2, 64))
    assert source.model.quantlens_source == {"kind": "factory", "path": FACTORY, "kwargs": {}}


def test_a_file_factory_is_recorded_by_its_absolute_path_and_reloads(tmp_path, monkeypatch):
    (tmp_path / "nets.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(1)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 4))\n"
    )
    monkeypatch.chdir(tmp_path)
    model = ql.load_model("nets.py:make", trust_code=True)
    assert model.quantlens_source["path"] == f"{tmp_path / 'nets.py'}:make"
    ckpt = ql.save(ql.quantize(model, ql.WeightOnly(bits=4, group_size=32)), tmp_path / "c")
    monkeypatch.chdir("/")
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    assert _same(ql.load(ckpt, trust_code=True), ql.load_model(ckpt, trust_code=True), x)


def test_a_factory_that_fails_or_returns_no_module_is_one_input_error():
    with pytest.raises(InputError, match="cannot import 'quantlens.nosuch:make'"):
        ql.load_model("quantlens.nosuch:make", trust_code=True)
    with pytest.raises(InputError, match=r"returned a OrderedDict, not a torch.nn.Module"):
        ql.load_model("collections:OrderedDict", trust_code=True)


def test_a_pickled_model_loads_only_with_allow_pickle(tmp_path):
    torch.save(make_mlp(), tmp_path / "whole.pt")
    with pytest.raises(UntrustedCodeError, match="whole.pt is a pickled file.*allow_pickle=True"):
        ql.load_model(tmp_path / "whole.pt")
    loaded = resolve_model(tmp_path / "whole.pt", allow_pickle=True)
    assert loaded.kind == "pickle" and _same(loaded.model, make_mlp(), torch.ones(1, 64))
    torch.save(make_mlp().state_dict(), tmp_path / "state.pt")
    with pytest.raises(InputError, match=r"state.pt holds tensors \(a state dict\?\), not a model"):
        ql.load_model(tmp_path / "state.pt")
    with zipfile.ZipFile(tmp_path / "damaged.pt", "w") as archive:
        archive.writestr("damaged/data.pkl", b"not a pickle")
    with pytest.raises(InputError, match="damaged.pt cannot be read"):
        ql.load_model(tmp_path / "damaged.pt")


class _Touch:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_refusing_a_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "MARKER"
    torch.save({"weights": _Touch(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UntrustedCodeError):
        ql.load_model(tmp_path / "evil.pt")
    assert not marker.exists()


def test_unknown_specs_name_the_spec_and_the_accepted_forms(tmp_path):
    with pytest.raises(UnknownNameError) as info:
        ql.load_model("no-such-model")
    line = str(info.value)
    assert line.startswith("unknown model 'no-such-model'; give a zoo model (cat-cnn, digits-cnn")
    for form in ("a quantlens checkpoint folder", "a Hugging Face model folder", "module:factory"):
        assert form in line
    assert "\n" not in line
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        InputError, match="empty is a folder with no quantlens.json, source.json or"
    ):
        ql.load_model(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="notes.txt is a file; give a zoo model"):
        ql.load_model(tmp_path / "notes.txt")


def test_a_hugging_face_folder_without_transformers_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError) as info:
        ql.load_model(tmp_path)
    assert str(info.value) == (
        "transformers is not installed; install it with: pip install 'quantlens[hf]'"
    )


@pytest.mark.slow
def test_a_hugging_face_folder_loads_offline(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(tmp_path)
    source = resolve_model(tmp_path)
    assert (source.kind, source.data) == ("hf", None)
    assert type(source.model).__name__ == "BertModel" and not source.model.training
    ids = torch.tensor([[1, 5, 7, 2]])
    reference = transformers.AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(source.model(ids).last_hidden_state, reference(ids).last_hidden_state)


def test_a_named_form_is_used_without_asking_which_form_the_spec_has(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="quantlens.json is missing"):
        resolve_model(tmp_path, kind="checkpoint")
    with pytest.raises(UnknownNameError, match="unknown model form 'onnx'; valid forms: zoo, "):
        resolve_model(tmp_path, kind="onnx")


def test_factory_specs_are_told_apart_without_importing_anything(tmp_path):
    (tmp_path / "a:b").write_text("")
    assert is_factory_spec("torch.nn:Identity") and is_factory_spec("nets.py:make")
    assert not is_factory_spec("digits-cnn")
    assert not is_factory_spec(str(tmp_path / "a:b"))  # an existing file with a colon
    assert not is_factory_spec("x" * 990 + ":make" + "y" * 10)  # longer than any real one


def test_a_registered_form_is_tried_in_its_order(tmp_path, monkeypatch):
    monkeypatch.setattr(sources_models, "_FORMS", list(sources_models._FORMS))
    register_model_form(
        ModelForm(
            "tiny",
            "tiny:N",
            lambda spec, path, kind: spec.startswith("tiny:"),
            lambda spec, options: nn.Linear(int(spec[5:]), 1),
            order=45,  # before factory, which would claim "tiny:3" too
        )
    )
    source = resolve_model("tiny:3")
    assert source.kind == "tiny" and source.model.in_features == 3
    assert "tiny:N, module:factory" in str(
        pytest.raises(UnknownNameError, ql.load_model, "?").value
    )
