"""Sensitivity and the mixed-precision planner on a causal LM: scored by the perplexity
increase (percent) on the token stream, the plan budgeted by ``max_ppl_increase``."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from helpers import tiny_llama

import quantlens as ql
from quantlens.analysis import search_plan, sensitivity
from quantlens.analysis.scoring import PPL_WINDOWS, Evaluator
from quantlens.errors import InputError
from quantlens.eval import measure_perplexity

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, CONTEXT = 128, 64


def _llama() -> torch.nn.Module:
    # initializer_range: logits far from uniform, so that low bits cost perplexity
    return tiny_llama(vocab_size=VOCAB, max_position_embeddings=CONTEXT, initializer_range=0.1)


def _gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=CONTEXT,
        n_embd=64,
        n_layer=2,
        n_head=4,
        initializer_range=0.1,
        bos_token_id=0,
        eos_token_id=VOCAB - 1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return transformers.GPT2LMHeadModel(config).eval()


@functools.cache
def _sampled(make) -> torch.Tensor:
    """Text the model itself samples: a quantized model can only score it worse on average
    (the cross-entropy exceeds the float model's entropy by the KL divergence)."""
    model = make()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(2)
        start = torch.zeros(5, 1, dtype=torch.long)
        ids = model.generate(
            start, do_sample=True, top_k=0, max_length=CONTEXT, min_length=CONTEXT, pad_token_id=0
        )
    return ids.reshape(1, -1)  # (1, 5 * CONTEXT)


def _stream(make=None) -> dict:
    return {"input_ids": _sampled(make or _llama)}


@pytest.mark.parametrize("make", [_llama, _gpt2], ids=["llama", "gpt2"])
def test_a_causal_lm_on_a_token_stream_is_scored_by_perplexity(make):
    model, data = make(), _stream(make)
    ev = Evaluator(model, data)
    assert ev.metric.name == "perplexity" and ev.metric.loss_unit == "% increase"
    # windows of the model's context, PPL_WINDOWS of them
    assert ev.window == CONTEXT and ev.stream.shape[1] == CONTEXT * PPL_WINDOWS
    expected = measure_perplexity(model, data["input_ids"][:, : CONTEXT * PPL_WINDOWS], window=64)
    assert ev.baseline == pytest.approx(expected.perplexity) and ev.samples == expected.tokens
    qm = ql.quantize(model, ql.WeightOnly(bits=2, group_size=32))
    score = ev.measure(qm)
    assert score.loss == pytest.approx(100 * (score.value / ev.baseline - 1))
    assert score.loss > 1.0 and not score.identical
    assert Evaluator(model, data, max_batches=2).stream.shape[1] == 2 * CONTEXT


def test_perplexity_needs_a_token_stream():
    with pytest.raises(InputError, match="one token stream"):
        Evaluator(_llama(), torch.randn(4, 8), metric="perplexity")


def test_sensitivity_ranks_layers_by_perplexity_increase():
    model, data = _llama(), _stream()
    result = sensitivity(model, data, ql.WeightOnly(bits=2, group_size=32), max_batches=2)
    assert result.metric == "perplexity" and result.loss_unit == "% increase"
    assert result.full_drop > 5.0  # all layers at 2 bits
    top = result.rows[0]
    # the row's drop is the measured perplexity increase with only that layer quantized
    qm = ql.quantize(model, ql.WeightOnly(bits=2, group_size=32))
    only = _llama()
    only.set_submodule(top.name, qm.get_submodule(top.name))
    ppl = measure_perplexity(only, data["input_ids"][:, : 2 * CONTEXT], window=CONTEXT)
    assert top.value == pytest.approx(ppl.perplexity, rel=1e-5)
    assert top.drop == pytest.approx(100 * (ppl.perplexity / result.baseline - 1), rel=1e-4)
    assert top.drop >= result.rows[-1].drop


def test_the_planner_keeps_a_perplexity_budget():
    model, data = _llama(), _stream()
    plan = search_plan(
        model, data, candidates=(8, 2, None), max_ppl_increase=2.0, max_batches=2, polish=8
    )
    assert plan.budget == {"max_ppl_increase": 2.0} and plan.met_budget
    assert plan.measured_drop <= 2.0
    assert {c.bits for c in plan.layers} - {None} and plan.size_bytes < plan.float_bytes
    qm = ql.quantize(model, plan.config)  # the plan's config gives the measured perplexity
    ppl = measure_perplexity(qm, data["input_ids"][:, : 2 * CONTEXT], window=CONTEXT)
    assert ppl.perplexity == pytest.approx(plan.measured_value, rel=1e-5)
    uniform2 = next(u for u in plan.uniform if u.bits == 2)
    assert uniform2.drop > 2.0  # what the plan avoided


@pytest.mark.slow
def test_the_commands_take_the_perplexity_budget(tmp_path, capsys):
    from quantlens.cli import main

    factory = tmp_path / "tiny_lm.py"
    factory.write_text(
        "import transformers, torch\n\n"
        "def make():\n"
        f"    config = transformers.LlamaConfig(vocab_size={VOCAB}, hidden_size=64, "
        f"intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, "
        f"num_key_value_heads=2, max_position_embeddings={CONTEXT}, initializer_range=0.1)\n"
        "    torch.manual_seed(0)\n"
        "    return transformers.LlamaForCausalLM(config).eval()\n"
    )
    torch.save(_stream()["input_ids"], tmp_path / "stream.pt")
    common = [f"{factory}:make", "--trust-code", "--data", str(tmp_path / "stream.pt")]
    common += ["--method", "w2", "--max-batches", "2"]
    assert main(["sensitivity", *common, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metric"] == "perplexity" and result["full_drop"] > 5.0
    plan_path = tmp_path / "plan.json"
    args = ["--candidates", "8,2,float", "--max-ppl-increase", "3", "--plan-out", str(plan_path)]
    assert main(["debug", *common, *args, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["budget"] == {"max_ppl_increase": 3.0} and plan["measured_drop"] <= 3.0
    assert json.loads(plan_path.read_text())["method"] == "weight_only"
