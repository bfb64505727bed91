"""A causal LM's output head (and an embedding tied to it) stays float by default under
WeightOnly and Dynamic, is quantized when asked (``lm_head=True`` or an override naming
it), and a checkpoint keeps the float head tied to its embedding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import quantlens as ql
from quantlens.methods.base import config_from_dict
from quantlens.methods.lm_head import LM_HEAD_REASON, TIED_REASON, output_heads
from quantlens.nn import QEmbedding, QLinear

transformers = pytest.importorskip("transformers")

W = ql.WeightOnly
IDS = torch.randint(1, 128, (1, 12), generator=torch.Generator().manual_seed(0))


def tiny_llama() -> nn.Module:
    config = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def llama() -> nn.Module:
    return tiny_llama()


def _records(qm) -> dict:
    return {r.name: r for r in qm.quantlens_summary.records}


def test_weight_only_keeps_the_tied_head_float_by_default(llama):
    qm = ql.quantize(llama, W(bits=4, group_size=32))
    assert type(qm.lm_head) is nn.Linear
    assert qm.lm_head.weight is qm.model.embed_tokens.weight  # still one tensor
    assert torch.equal(qm.lm_head.weight, llama.lm_head.weight)
    record = _records(qm)["lm_head"]
    assert (record.action, record.reason) == ("float", LM_HEAD_REASON)
    assert "pass lm_head=True" in str(qm.quantlens_summary)
    assert isinstance(qm.model.layers[0].mlp.down_proj, QLinear)  # the rest is quantized
    assert len(qm.quantlens_summary.quantized) == 14  # 7 Linear layers per block


def test_weight_only_lm_head_true_quantizes_head_and_tied_embedding(llama):
    qm = ql.quantize(llama, W(bits=4, group_size=32, lm_head=True))
    assert isinstance(qm.lm_head, QLinear) and type(qm.model.embed_tokens) is nn.Embedding
    both = W(bits=4, group_size=32, modules=("linear", "embedding"), lm_head=True)
    qb = ql.quantize(llama, both)
    assert isinstance(qb.model.embed_tokens, QEmbedding)
    assert qb.lm_head.weight_packed is qb.model.embed_tokens.weight_packed
    # asked for embeddings only: the one tied to the float head stays float with it
    qe = ql.quantize(llama, W(bits=4, group_size=32, modules=("linear", "embedding")))
    assert type(qe.model.embed_tokens) is nn.Embedding and type(qe.lm_head) is nn.Linear
    assert _records(qe)["model.embed_tokens"].reason == TIED_REASON
    # an override naming the head is asking for it
    qo = ql.quantize(llama, W(bits=4, group_size=32, overrides={"lm_head": W(bits=8)}))
    assert isinstance(qo.lm_head, QLinear) and qo.lm_head.scheme.bits == 8


def test_quantizing_the_head_costs_more_error_than_keeping_it_float(llama):
    with torch.no_grad():
        ref = llama(IDS).logits
        kept = ql.quantize(llama, W(bits=3, group_size=32))(IDS).logits
        full = ql.quantize(llama, W(bits=3, group_size=32, lm_head=True))(IDS).logits
    assert (kept - ref).pow(2).mean() < (full - ref).pow(2).mean()


def test_dynamic_keeps_the_head_float_unless_asked(llama):
    qm = ql.quantize(llama, ql.Dynamic())
    assert type(qm.lm_head) is nn.Linear
    assert _records(qm)["lm_head"].reason == LM_HEAD_REASON
    assert type(qm.model.layers[0].self_attn.q_proj) is not nn.Linear
    asked = ql.quantize(llama, ql.Dynamic(lm_head=True))
    assert type(asked.lm_head) is type(qm.model.layers[0].self_attn.q_proj)


def test_float_head_saves_and_loads_tied(llama, tmp_path):
    qm = ql.quantize(llama, W(bits=4, group_size=32))
    ql.save(qm, tmp_path)
    loaded = ql.load(tmp_path)
    assert type(loaded.lm_head) is nn.Linear
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    with torch.no_grad():
        torch.testing.assert_close(loaded(IDS).logits, qm(IDS).logits)


def test_configs_saved_before_the_option_meant_a_quantized_head():
    old = W(bits=4).to_dict()
    del old["lm_head"]
    assert config_from_dict(old).lm_head is True
    new = config_from_dict(W(bits=4).to_dict())
    assert new.lm_head is False
    dyn = ql.Dynamic().to_dict()
    del dyn["lm_head"]
    assert config_from_dict(dyn).lm_head is True


class _TinyGPT(nn.Module):
    """nanoGPT's layout: the output Linear shares the token embedding's weight."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(32, 16)
        self.block = nn.Linear(16, 16)
        self.out = nn.Linear(16, 32, bias=False)
        self.out.weight = self.wte.weight

    def forward(self, ids):
        return self.out(self.block(self.wte(ids)))


def test_output_heads_finds_heads_by_tie_name_and_hf_class(llama):
    gpt = _TinyGPT()
    assert output_heads(gpt) == {id(gpt.out): "head", id(gpt.wte): "tied"}
    assert output_heads(llama) == {id(llama.lm_head): "head", id(llama.model.embed_tokens): "tied"}
    assert output_heads(nn.Sequential(nn.Embedding(8, 4), nn.Linear(4, 8))) == {}
    named = nn.ModuleDict({"body": nn.Linear(4, 4), "lm_head": nn.Linear(4, 8)})
    assert output_heads(named) == {id(named["lm_head"]): "head"}
    qm = ql.quantize(gpt, W(bits=4, group_size=16))
    assert type(qm.out) is nn.Linear and isinstance(qm.block, QLinear)
