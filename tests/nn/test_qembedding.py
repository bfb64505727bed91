import pytest
import torch
from conformance import SCHEMES, LayerConformance
from helpers import generator, random_tensor
from torch import nn

from quantlens import QScheme, quantize_tensor
from quantlens.errors import InputError, SchemeError
from quantlens.nn import QEmbedding, quantized_class_for

VOCAB, DIM = 300, 256


class TestQEmbeddingConformance(LayerConformance):
    qcls = QEmbedding

    def make_float(self, seed=0):
        emb = nn.Embedding(VOCAB, DIM)
        with torch.no_grad():
            emb.weight.copy_(random_tensor(VOCAB, DIM, seed=seed))
        return emb

    def make_input(self, layer, batch, dtype, seed=0):
        g = generator(seed)
        return torch.randint(0, layer.num_embeddings, (batch, 5), generator=g)

    def reference(self, layer, ids):
        return layer.dequantized_weight()[ids]

    def test_lookup_matches_the_dequantized_table(self):
        for scheme in SCHEMES.values():
            _, qt, layer = self.quantize(scheme)
            ids = self.make_input(layer, 4, torch.float32)
            assert torch.equal(layer(ids), qt.dequantize()[ids]), scheme.describe()
            assert layer._cache == {}, "byte-aligned rows should not cache the table"


@pytest.mark.parametrize("bits", [3, 5, 7])
def test_rows_that_are_not_whole_bytes(bits):
    emb = nn.Embedding(11, 10)  # 10 * bits is not a multiple of 8
    qt = quantize_tensor(
        emb.weight.detach(), QScheme(bits=bits, symmetric=False, granularity="per_channel")
    )
    layer = QEmbedding.from_float(emb, qt)
    ids = torch.tensor([[0, 10, 3], [3, 3, 7]])
    assert torch.equal(layer(ids), qt.dequantize()[ids])


def test_bad_input():
    emb = nn.Embedding(VOCAB, DIM)
    scheme = QScheme(bits=4, granularity="per_channel")
    layer = QEmbedding.from_float(emb, quantize_tensor(emb.weight.detach(), scheme))
    with pytest.raises(InputError, match="out of range"):
        layer(torch.tensor([VOCAB]))
    with pytest.raises(InputError, match="int64"):
        layer(torch.tensor([1.0]))
    with pytest.raises(SchemeError, match="per row"):
        QEmbedding(VOCAB, DIM, scheme=QScheme(bits=4, granularity="per_channel", axis=1))
    assert quantized_class_for(nn.Embedding) is QEmbedding
    assert layer(torch.zeros(0, dtype=torch.long)).shape == (0, DIM)


def test_to_float_gives_the_dequantized_table():
    emb = nn.Embedding(VOCAB, DIM, padding_idx=0)
    layer = QEmbedding.from_float(
        emb, quantize_tensor(emb.weight.detach(), SCHEMES["b4-per_group-asym"])
    )
    back = layer.to_float()
    assert type(back) is nn.Embedding and repr(back) == repr(emb)
    assert torch.equal(back.weight, layer.dequantized_weight())
