"""Static and QAT on Hugging Face-style models: tokenized dict batches, models whose own
forward torch.fx cannot capture (regions), attention math left float, observer='auto'."""

from __future__ import annotations

import math
import re

import pytest
import torch
from helpers import assert_similar, generator
from torch import nn

import quantlens as ql
from quantlens.errors import InputError
from quantlens.methods.backends import torch_ao

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, HIDDEN, SEQ = 40, 32, 12


class ToyAttentionBlock(nn.Module):
    """A BERT-style block: Q/K/V, masked softmax attention, output projection, feed-forward."""

    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(HIDDEN, HIDDEN) for _ in range(3))
        self.out = nn.Linear(HIDDEN, HIDDEN)
        self.norm1, self.norm2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)
        self.ff = nn.Sequential(
            nn.Linear(HIDDEN, 2 * HIDDEN), nn.GELU(), nn.Linear(2 * HIDDEN, HIDDEN)
        )

    def forward(self, hidden, mask):  # (B, T, C), (B, 1, T) additive mask
        q, k, v = self.query(hidden), self.key(hidden), self.value(hidden)
        probs = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(HIDDEN) + mask, dim=-1)  # (B, T, T)
        hidden = self.norm1(hidden + self.out(probs @ v))
        return self.norm2(hidden + self.ff(hidden))


class ToyEncoder(nn.Module):
    """Takes ``input_ids`` / ``attention_mask`` like a transformers model and, like its SDPA
    path, drops a mask with nothing masked (data-dependent Python), so torch.fx cannot
    capture its forward: Static captures regions."""

    def __init__(self, blocks: int = 1, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.blocks = nn.ModuleList(ToyAttentionBlock() for _ in range(blocks))
        self.head = nn.Linear(HIDDEN, classes)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        batch, seq = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones(batch, seq)
        attention_mask = attention_mask.float()
        mask = (
            torch.zeros(())
            if bool(attention_mask.min() > 0)
            else (1.0 - attention_mask[:, None, :]) * -1e4
        )
        hidden = self.embed(input_ids)
        for block in self.blocks:
            hidden = block(hidden, mask)
        pooled = (hidden * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
        return {"last_hidden_state": hidden, "logits": self.head(pooled)}


class ToyTraceable(nn.Module):
    """Keyword inputs, traceable: Static captures the whole graph."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.mlp = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN))

    def forward(self, input_ids, attention_mask=None):
        hidden = self.mlp(self.embed(input_ids))
        if attention_mask is not None:
            hidden = hidden * attention_mask[..., None]
        return hidden


def _seeded(cls):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return cls().eval()


def _batches(n: int = 3, size: int = 8, seed: int = 0, labels: bool = False) -> list[dict]:
    g = generator(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, VOCAB, (size, SEQ), generator=g)
        lengths = torch.randint(4, SEQ + 1, (size,), generator=g)
        mask = (torch.arange(SEQ)[None, :] < lengths[:, None]).long()  # padded, like a tokenizer
        batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
        if labels:
            batch["labels"] = torch.randint(0, 3, (size,), generator=g)
        out.append(batch)
    return out


@pytest.fixture(scope="module")
def encoder():
    return _seeded(ToyEncoder)


def test_dict_batches_calibrate_regions_with_attention_math_in_float(encoder):
    calib, test = _batches(3), _batches(1, seed=1)[0]
    qm = ql.quantize(encoder, ql.Static(), calib_data=calib)
    summary = qm.quantlens_summary
    linears = [n for n, m in encoder.named_modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 7
    assert {r.name.removesuffix(".module") for r in summary.quantized} == set(linears)
    assert any("captured 2 region(s)" in n for n in summary.notes)  # the block and the head
    block = qm.blocks[0]
    assert isinstance(block, torch.fx.GraphModule) and torch_ao.is_quantized_module(block.query)
    code = block.code
    # one Quant per distinct Linear input (Q/K/V share one), one DeQuant per Linear output:
    # the attention math, the residual adds and the norms run on float tensors
    assert code.count("quantize_per_tensor(") == 4 and code.count(".dequantize()") == 6
    assert "softmax = torch.softmax(add" in code and "quantized.add" not in code
    with torch.no_grad():
        ref, out = encoder(**test), qm(**test)
    assert_similar(out["logits"], ref["logits"], min_cosine=0.99)
    assert_similar(out["last_hidden_state"], ref["last_hidden_state"], min_cosine=0.99)
    assert encoder.blocks[0].query.weight.dtype == torch.float32  # the caller's model is untouched
    for record in summary.quantized:  # observer="auto": the measured choice, per region
        chosen = record.detail.split(" activations")[0].rsplit(" ", 1)[1]
        scores = dict(
            part.rsplit(" ", 1)
            for part in record.detail.split("SQNR in dB ")[1].rstrip(")").split(", ")
        )
        assert set(scores) == {"mse", "entropy", "percentile", "minmax"}
        assert float(scores[chosen]) == max(float(v) for v in scores.values()) > 20
    assert any("observer='auto' chose" in n for n in summary.notes)


def test_a_region_below_the_sqnr_floor_stays_float(encoder, monkeypatch):
    from quantlens.methods import int8_choice

    monkeypatch.setattr(int8_choice, "MIN_SQNR_DB", 1e9)  # no region reaches it
    qm = ql.quantize(encoder, ql.Static(overrides={"head": ql.Dynamic()}), calib_data=_batches(1))
    records = {r.name: r for r in qm.quantlens_summary.records}
    assert [r.name for r in qm.quantlens_summary.quantized] == ["head"]  # by Dynamic
    assert records["blocks.0.query"].action == "float"
    assert re.search(
        r"int8 output SQNR \d+\.\d dB .* below 1e\+09 dB; left float",
        records["blocks.0.query"].reason,
    )
    test = _batches(1, seed=1)[0]
    with torch.no_grad():  # the float block runs without observers, exactly as before
        assert torch.equal(
            qm.blocks[0](encoder.embed(test["input_ids"]), torch.zeros(())),
            encoder.blocks[0](encoder.embed(test["input_ids"]), torch.zeros(())),
        )


def test_skip_and_fixed_observer_in_regions():
    encoder = _seeded(lambda: ToyEncoder(blocks=2))
    qm = ql.quantize(
        encoder, ql.Static(observer="minmax", skip=["blocks.1"]), calib_data=_batches(2)
    )
    records = {r.name: r for r in qm.quantlens_summary.records}
    assert (
        records["blocks.1.query"].action == "skipped"
        and records["blocks.0.query"].action == "quantized"
    )
    assert "minmax activations" in records["blocks.0.query"].detail
    assert isinstance(qm.blocks[1], ToyAttentionBlock)  # not captured at all


def test_dict_batches_capture_a_traceable_model_whole():
    model = _seeded(ToyTraceable)
    calib = [{k: v for k, v in b.items() if k != "token_type_ids"} for b in _batches(3)]
    qm = ql.quantize(model, ql.Static(), calib_data=calib)
    assert (
        isinstance(qm, torch.fx.GraphModule)
        and "def forward(self, input_ids, attention_mask)" in qm.code
    )
    assert len(qm.quantlens_summary.quantized) == 2
    test = calib[0]
    with torch.no_grad():
        assert_similar(qm(**test), model(**test), min_cosine=0.99)
        assert_similar(
            qm(test["input_ids"], test["attention_mask"]), model(**test), min_cosine=0.99
        )
    assert qm.quantlens_example_inputs["kwargs"]["input_ids"] == {
        "shape": [1, SEQ],
        "dtype": "int64",
    }


def test_example_inputs_may_be_a_dict():
    model = _seeded(ToyTraceable)
    batch = {k: v for k, v in _batches(1)[0].items() if k != "token_type_ids"}
    observed = ql.prepare(model, ql.Static(observer="minmax"), example_inputs=batch)
    with torch.no_grad():
        observed(**batch)
    qm = ql.convert(observed)
    with torch.no_grad():
        assert_similar(qm(**batch), model(**batch), min_cosine=0.99)


def test_batch_keys_the_forward_does_not_take_are_refused():
    model = _seeded(ToyTraceable)
    bad = [{"input_ids": torch.zeros(2, SEQ, dtype=torch.long), "pixel_values": torch.zeros(2, 3)}]
    with pytest.raises(InputError, match="does not fit ToyTraceable.forward"):
        ql.quantize(model, ql.Static(), calib_data=bad)


def test_qat_trains_and_converts_on_dict_batches(encoder):
    train = _batches(4, labels=True)
    qat = ql.prepare_qat(
        encoder, ql.QAT(), example_inputs={k: v for k, v in train[0].items() if k != "labels"}
    )
    assert any("region(s)" in n for n in qat.quantlens_summary.notes)

    def loss(out, labels):
        return nn.functional.cross_entropy(out["logits"], labels)

    history = ql.train_qat(qat, train, epochs=1, loss=loss, lr=1e-3)
    assert math.isfinite(history[0]["train_loss"])
    qm = ql.convert(qat)
    linears = sum(isinstance(m, nn.Linear) for m in encoder.modules())
    assert len(qm.quantlens_summary.quantized) == linears
    test = {k: v for k, v in _batches(1, seed=1)[0].items()}
    with torch.no_grad():
        qat.eval()
        assert_similar(qm(**test)["logits"], qat(**test)["logits"], min_cosine=0.98)
