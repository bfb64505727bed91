"""AWQ and SmoothQuant on Linears with nothing to fold their scales into: the quantized layer
keeps an explicit input scale, saved and loaded with the checkpoint."""

import pytest
import torch
from helpers import assert_similar
from scale_helpers import CALIB, LLAMA_CALIB, TEST, PostNormBlock, llama_tokens, tiny_llama

import quantlens as ql
from quantlens.methods.base import QuantContext, QuantSummary
from quantlens.methods.smoothing import smooth
from quantlens.methods.weight_only import WeightOnly
from quantlens.methods.weight_only.awq import apply_awq
from quantlens.nn.input_scale import input_scale_of


def _outlier_post_norm() -> PostNormBlock:
    """norm -> fc with the norm output also on the residual (no fold), outlier channels."""
    torch.manual_seed(0)
    model = PostNormBlock().eval()
    with torch.no_grad():
        model.norm.weight[[3, 17]] = 30.0
    return model


def _mse(model, ref) -> float:
    with torch.no_grad():
        return float((model(TEST) - ref).pow(2).mean())


def test_awq_scales_a_layer_without_producer_explicitly():
    model = _outlier_post_norm()
    ref = model(TEST).detach()
    rtn = ql.quantize(model, WeightOnly(bits=4, group_size=32), calib_data=CALIB)
    awq = ql.quantize(model, WeightOnly(bits=4, group_size=32, algorithm="awq"), calib_data=CALIB)
    assert input_scale_of(awq.fc) is not None and input_scale_of(rtn.fc) is None
    assert torch.equal(awq.norm.weight, model.norm.weight)  # nothing folded
    assert _mse(awq, ref) < 0.8 * _mse(rtn, ref)
    note = next(n for n in awq.quantlens_summary.notes if n.startswith("AWQ"))
    assert "0 folded" in note and "1 of the 1 with nothing to fold into" in note


def test_smoothquant_dynamic_scales_a_layer_without_producer_explicitly():
    model = _outlier_post_norm()
    ref = model(TEST).detach()
    plain = ql.quantize(model, ql.Dynamic())
    smoothed = ql.quantize(model, ql.Dynamic(smoothquant=0.5), calib_data=CALIB)
    assert input_scale_of(smoothed.fc) is not None
    assert _mse(smoothed, ref) < 0.5 * _mse(plain, ref)


@pytest.mark.slow
def test_static_smoothquant_leaves_such_layers_unscaled():
    model = _outlier_post_norm()
    qm = ql.quantize(model, ql.Static(smoothquant=0.5), calib_data=CALIB)
    assert not any(input_scale_of(m) is not None for m in qm.modules())
    assert any("1 have no norm or Linear" in n for n in qm.quantlens_summary.notes)


def _scale_llama(model, names: list[str], method: str) -> None:
    """Run AWQ's (w4 g32) or SmoothQuant's (alpha 0.5) scaling over ``names`` of a Llama."""
    if method == "awq":
        ctx = QuantContext(WeightOnly(bits=4, group_size=32), QuantSummary(), LLAMA_CALIB)
        apply_awq(model, names, ctx)
    else:
        ctx = QuantContext(ql.Dynamic(smoothquant=0.5), QuantSummary(), LLAMA_CALIB)
        smooth(model, names, ctx, 0.5, per_token=True, explicit=True)


@pytest.mark.parametrize("method", [pytest.param("awq", marks=pytest.mark.slow), "smoothquant"])
def test_on_a_gqa_llama_o_proj_gets_an_explicit_scale_and_the_function_is_kept(method):
    model = tiny_llama()
    x = llama_tokens(5)
    ref = model(**x).logits.detach()
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    names.remove("lm_head")
    _scale_llama(model, names, method)
    scaled = {n for n, m in model.named_modules() if input_scale_of(m) is not None}
    # v_proj (32 wide under 2 KV heads) cannot take o_proj's (64) scales: o_proj is explicit
    assert scaled and scaled <= {f"model.layers.{i}.self_attn.o_proj" for i in range(2)}
    if method == "smoothquant":
        assert len(scaled) == 2
    assert_similar(model(**x).logits, ref, atol=1e-5, rtol=1e-5)  # still the float function


def test_a_checkpoint_keeps_the_explicit_scales(tmp_path):
    model = _outlier_post_norm()
    for config in (WeightOnly(bits=4, group_size=32, algorithm="awq"), ql.Dynamic(smoothquant=0.5)):
        qm = ql.quantize(model, config, calib_data=CALIB)
        ql.save(qm, tmp_path / "q")
        back = ql.load(tmp_path / "q", model=PostNormBlock())
        assert torch.equal(back.fc.input_scale, qm.fc.input_scale)
        with torch.no_grad():
            assert torch.equal(back(TEST), qm(TEST))


@pytest.mark.parametrize("method", ["awq", "smoothquant"])
def test_a_tied_lm_head_gets_no_explicit_scale(method):
    model = tiny_llama()
    model.lm_head.weight = model.model.embed_tokens.weight  # tied, as SmolLM2's
    embedding = model.model.embed_tokens.weight.detach().clone()
    x = llama_tokens(5)
    ref = model(**x).logits.detach()
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    _scale_llama(model, names, method)
    assert input_scale_of(model.lm_head) is None
    assert torch.equal(model.model.embed_tokens.weight, embedding)
    assert_similar(model(**x).logits, ref, atol=1e-5, rtol=1e-5)
