import pytest
import torch
from helpers import generator
from torch import nn

from quantlens.errors import InputError
from quantlens.eval.quality import (
    collect_outputs,
    measure_quality,
    prediction_agreement,
    top1_accuracy,
)


def test_top1_and_agreement_by_hand():
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert top1_accuracy(logits, torch.tensor([1, 0, 0, 0])) == 75.0
    flipped = logits.clone()
    flipped[0] = torch.tensor([0.9, 0.1])
    assert prediction_agreement(logits, flipped) == 75.0


def test_classification_quality_against_float():
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    x = torch.randn(40, 8)
    y = model(x).argmax(-1)
    ref = collect_outputs(model, (x, y))
    noisy = nn.Linear(8, 3)
    noisy.load_state_dict(
        {k: v + 0.01 * torch.randn_like(v) for k, v in model.state_dict().items()}
    )
    q = measure_quality(ref, collect_outputs(noisy, (x, y)))
    assert q.kind == "logits"
    assert q.accuracy > 90 and q.agreement > 90
    assert 20 < q.sqnr_db < 80 and q.cosine > 0.99
    same = measure_quality(ref, ref)
    assert same.accuracy == 100.0 and same.sqnr_db == float("inf") and same.agreement == 100.0


def test_user_metric_without_labels():
    model = nn.Linear(4, 1)
    x = torch.randn(10, 4)
    ref = collect_outputs(model, x)
    q = measure_quality(
        ref, ref, metric=lambda out, labels: float(out.mean()) if labels is None else -1.0
    )
    assert q.accuracy is None and q.metric == pytest.approx(float(model(x).mean()), rel=1e-5)


class TinyEncoder(nn.Module):
    """(B, L) ids + mask -> (B, L, H) token states, like a Hugging Face encoder."""

    def __init__(self, noise: float = 0.0):
        super().__init__()
        torch.manual_seed(1)
        self.emb = nn.Embedding(50, 16)
        self.noise = noise

    def forward(self, input_ids, attention_mask):
        h = self.emb(input_ids)
        return h + self.noise * torch.sin(h * 7)


def test_embedding_models_report_cosine_to_float_as_accuracy():
    ids = torch.randint(0, 50, (12, 6), generator=generator(0))
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]
    ref = collect_outputs(TinyEncoder(), batches)
    assert ref.kind == "embedding" and ref.values.shape == (12, 16)
    q = measure_quality(ref, collect_outputs(TinyEncoder(noise=0.05), batches))
    assert q.kind == "embedding"
    assert 95.0 < q.accuracy < 100.0  # mean cosine of each sentence embedding to float, in %
    assert q.agreement is not None


def test_output_shape_mismatch_is_an_input_error():
    ref = collect_outputs(nn.Linear(4, 3), torch.randn(5, 4))
    other = collect_outputs(nn.Linear(4, 2), torch.randn(5, 4))
    with pytest.raises(InputError, match="shape"):
        measure_quality(ref, other)
