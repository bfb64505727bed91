"""AWQ: scales searched on activations, folded into the preceding norm / Linear."""

import pytest
import torch
from helpers import assert_similar, run_ranks
from scale_helpers import (
    CALIB,
    LLAMA_CALIB,
    TEST,
    PostNormBlock,
    llama_tokens,
    norm_linear,
    rows,
    tiny_llama,
)

import quantlens as ql
from quantlens.errors import ConfigError
from quantlens.methods.base import QuantContext, QuantSummary
from quantlens.methods.scale_fold import fold, foldable_groups
from quantlens.methods.weight_only import WeightOnly
from quantlens.methods.weight_only.awq import apply_awq, awq_scales


def _mse(a, b) -> float:
    return float((a - b).detach().pow(2).mean())


def test_awq_scales_are_normalised_powers_of_the_mean():
    s = awq_scales(torch.tensor([4.0, 1.0, 2.0]), 0.5)
    assert_similar(s, torch.tensor([2.0, 1.0, 2**0.5]) / 2**0.5)
    assert torch.equal(awq_scales(torch.tensor([4.0, 1.0]), 0.0), torch.ones(2))


def test_awq_reduces_the_layer_output_error_of_rtn_on_outlier_channels():
    model = norm_linear()
    ref = model(TEST)
    errors = {}
    for algorithm in ("rtn", "awq"):
        cfg = WeightOnly(bits=4, group_size=32, algorithm=algorithm)
        qm = ql.quantize(model, cfg, calib_data=CALIB)
        errors[algorithm] = _mse(qm(TEST), ref)
    assert errors["awq"] < 0.6 * errors["rtn"], errors  # measured 0.0078 vs 0.0221
    assert any("AWQ: scaled 1 of 1" in n for n in qm.quantlens_summary.notes)
    assert torch.equal(model.norm.weight[3], torch.tensor(30.0))  # the caller's model untouched


def test_groups_and_producers_are_found_by_tracing_a_llama():
    model = tiny_llama()
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    good, bad = foldable_groups(model, names, LLAMA_CALIB)
    pairs = {g.consumers: g.producer for g in good}
    layer = "model.layers.0"
    assert pairs[tuple(f"{layer}.self_attn.{p}_proj" for p in "qkv")] == f"{layer}.input_layernorm"
    gate_up = (f"{layer}.mlp.gate_proj", f"{layer}.mlp.up_proj")
    assert pairs[gate_up] == f"{layer}.post_attention_layernorm"
    assert pairs[(f"{layer}.mlp.down_proj",)] == f"{layer}.mlp.up_proj"
    assert pairs[("lm_head",)] == "model.norm"
    # grouped-query attention: v_proj is narrower than o_proj's input, nothing to fold into
    assert (f"{layer}.self_attn.o_proj",) in {g.consumers for g in bad}


def test_folding_keeps_the_float_function():
    model = tiny_llama()
    x = llama_tokens(5)
    ref = model(**x).logits
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    good, _ = foldable_groups(model, names, LLAMA_CALIB)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for group in good:
            width = model.get_submodule(group.consumers[0]).in_features
            fold(model, group, torch.rand(width, generator=g) * 3 + 0.2)
    assert_similar(model(**x).logits, ref, atol=1e-5, rtol=1e-5)


def test_awq_search_and_fold_leave_the_float_model_equal_before_rounding():
    model = tiny_llama()
    x = llama_tokens(5)
    ref = model(**x).logits
    before = model.model.layers[0].input_layernorm.weight.clone()
    config = WeightOnly(bits=4, group_size=32, algorithm="awq")
    ctx = QuantContext(config, QuantSummary(), LLAMA_CALIB)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    apply_awq(model, names, ctx)
    assert not torch.equal(model.model.layers[0].input_layernorm.weight, before)  # scaled
    assert_similar(model(**x).logits, ref, atol=1e-5, rtol=1e-5)


def test_a_norm_that_also_feeds_the_residual_is_not_folded():
    torch.manual_seed(0)
    model = PostNormBlock().eval()
    good, bad = foldable_groups(model, ["fc"], [rows(8, 0)])
    assert good == [] and [g.consumers for g in bad] == [("fc",)]
    qm = ql.quantize(model, WeightOnly(bits=4, group_size=32, algorithm="awq"), calib_data=CALIB)
    assert torch.equal(qm.norm.weight, model.norm.weight)
    assert any("1 have no norm or Linear" in n for n in qm.quantlens_summary.notes)


@pytest.mark.parametrize("algorithm", ["awq", pytest.param("awq+gptq", marks=pytest.mark.slow)])
def test_awq_on_a_llama_beats_rtn_and_round_trips_a_checkpoint(tmp_path, algorithm):
    model = tiny_llama()
    x = llama_tokens(5)
    ref = model(**x).logits
    rtn = ql.quantize(model, WeightOnly(bits=4, group_size=32))
    cfg = WeightOnly(bits=4, group_size=32, algorithm=algorithm)
    qm = ql.quantize(model, cfg, calib_data=LLAMA_CALIB)
    assert _mse(qm(**x).logits, ref) < 0.8 * _mse(rtn(**x).logits, ref)
    ql.save(qm, tmp_path / "ckpt")
    loaded = ql.load(tmp_path / "ckpt", model=tiny_llama())
    assert loaded.quantlens_config == cfg
    assert torch.equal(loaded(**x).logits, qm(**x).logits)


def test_awq_needs_calibration_data():
    with pytest.raises(ConfigError, match="calib_data"):
        ql.quantize(norm_linear(), WeightOnly(bits=4, algorithm="awq"))


def _awq_rank(rank: int, world: int) -> list:
    model = norm_linear()
    cfg = WeightOnly(bits=4, group_size=32, algorithm="awq")
    qm = ql.quantize(model, cfg, calib_data=[rows(32, 10 + rank)])  # each rank its own share
    with torch.no_grad():
        return qm(TEST).tolist()


@pytest.mark.slow
def test_awq_ranks_agree_on_the_scales(one_thread):
    results = run_ranks(_awq_rank, 2)
    for ok, value in results:
        assert ok, value
    assert results[0][1] == results[1][1]  # merged statistics, errors summed: one choice


def test_awq_plus_gptq_reads_a_one_shot_iterator_for_every_pass():
    model = norm_linear()
    cfg = WeightOnly(bits=4, group_size=32, algorithm="awq+gptq")
    from_list = ql.quantize(model, cfg, calib_data=CALIB)
    from_generator = ql.quantize(model, cfg, calib_data=(b for b in CALIB))
    assert torch.equal(from_generator(TEST), from_list(TEST))
