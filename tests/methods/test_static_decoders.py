"""Static and QAT on decoder-style models: the root traces, but every block's own forward
cannot be traced (optional arguments, data-dependent Python), so one whole-model graph would
leave the blocks float. Regions inside the blocks are captured instead."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import generator
from torch import nn

import quantlens as ql

pytestmark = pytest.mark.usefixtures("one_thread")

HIDDEN, SEQ = 32, 10


class GatedBlock(nn.Module):
    """Attention-free decoder block: a projection and an MLP, with a data-dependent branch
    in its own forward (torch.fx cannot trace it); its layers are called with one tensor."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(HIDDEN, HIDDEN)
        self.mlp = nn.Sequential(
            nn.Linear(HIDDEN, 2 * HIDDEN), nn.GELU(), nn.Linear(2 * HIDDEN, HIDDEN)
        )

    def forward(self, x):
        if bool(x.abs().max() > 1e3):  # data-dependent: torch.fx cannot trace this forward
            x = x / 1e3
        x = x + self.proj(x)[..., : self.proj.out_features]  # reads an attribute of its layer
        return x + self.mlp(x)


class GatedDecoder(nn.Module):
    """Blocks that torch.fx cannot trace inside a root that it can (around them)."""

    def __init__(self, blocks: int = 2):
        super().__init__()
        self.blocks = nn.ModuleList(GatedBlock() for _ in range(blocks))
        self.head = nn.Linear(HIDDEN, 8)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x.to(self.head.weight.dtype))  # as ViT casts to its projection's dtype


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def _quantized_linears(qm) -> list[str]:
    return [r.name for r in qm.quantlens_summary.quantized if r.kind == "Linear"]


def test_blocks_that_cannot_be_traced_are_captured_by_regions_not_left_float():
    torch.manual_seed(0)
    model = GatedDecoder().eval()
    calib = [torch.randn(4, SEQ, HIDDEN, generator=generator(i)) for i in range(4)]
    qm = ql.quantize(model, ql.Static(observer="minmax"), calib_data=calib)
    assert len(_quantized_linears(qm)) == 7  # 2 blocks x (proj + 2 MLP) + head, not the head alone
    assert any("region(s)" in n for n in qm.quantlens_summary.notes)
    assert (
        qm.head.weight.shape == model.head.weight.shape and qm.blocks[0].proj.out_features == HIDDEN
    )
    x = torch.randn(3, SEQ, HIDDEN, generator=generator(9))
    with torch.no_grad():
        assert _cosine(qm(x), model(x)) > 0.99
        assert torch.equal(copy.deepcopy(qm)(x), qm(x))


def test_an_untraceable_module_without_layers_keeps_the_whole_graph():
    """A gate with no Conv/Linear costs the whole-model graph nothing: no regions."""

    class Gate(nn.Module):
        def forward(self, x):
            return x * 0.5 if bool(x.mean() > 0) else x

    model = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), Gate(), nn.Linear(HIDDEN, 8)).eval()
    calib = [torch.randn(4, HIDDEN, generator=generator(i)) for i in range(2)]
    qm = ql.quantize(model, ql.Static(observer="minmax"), calib_data=calib)
    assert isinstance(qm, torch.fx.GraphModule)
    assert len(_quantized_linears(qm)) == 2
    assert not any("region(s)" in n for n in qm.quantlens_summary.notes)


def _tiny_llama():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        initializer_range=64**-0.5,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def _tokens(n: int, seed: int) -> dict:
    mask = torch.ones(n, SEQ, dtype=torch.long)
    mask[-1, -3:] = 0  # right padding on the last sample
    return {
        "input_ids": torch.randint(3, 64, (n, SEQ), generator=generator(seed)),
        "attention_mask": mask,
    }


@pytest.mark.slow
@pytest.mark.parametrize("method", ["static", "qat"])
def test_tiny_llama_quantizes_its_blocks(method):
    model = _tiny_llama()
    calib = [_tokens(4, i) for i in range(4)]
    if method == "static":
        qm = ql.quantize(model, ql.Static(), calib_data=calib)
    else:
        prepared = ql.prepare_qat(model, ql.QAT(), example_inputs=calib[0])
        with torch.no_grad():
            for batch in calib:
                prepared(**batch)
        qm = ql.convert(prepared)
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())  # 7 per layer + lm_head = 15
    assert len(_quantized_linears(qm)) == linears
    test = _tokens(3, 99)
    with torch.no_grad():
        assert _cosine(qm(**test).logits, model(**test).logits) > 0.99
