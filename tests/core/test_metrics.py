import math

import pytest
import torch

from quantlens.core.metrics import (
    cosine_similarity,
    max_abs_error,
    mse,
    prediction_agreement,
    prediction_rule,
    sqnr_db,
)
from quantlens.errors import InputError


def test_values():
    ref = torch.tensor([3.0, 4.0])
    approx = torch.tensor([3.0, 4.5])
    assert mse(ref, approx) == pytest.approx(0.125)
    assert max_abs_error(ref, approx) == pytest.approx(0.5)
    assert sqnr_db(ref, approx) == pytest.approx(10 * math.log10(25 / 0.25))
    assert cosine_similarity(ref, ref * 2) == pytest.approx(1.0)
    assert cosine_similarity(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == pytest.approx(
        0.0
    )


def test_identical_and_zero():
    x = torch.randn(10)
    assert sqnr_db(x, x.clone()) == math.inf
    assert sqnr_db(torch.zeros(3), torch.ones(3)) == -math.inf
    assert mse(x, x) == 0.0 and max_abs_error(x, x) == 0.0
    assert cosine_similarity(torch.zeros(3), torch.zeros(3)) == 1.0
    assert cosine_similarity(torch.zeros(3), torch.ones(3)) == 0.0


def test_cosine_per_row():
    ref = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    approx = torch.tensor([[1.0, 0.0], [-1.0, -1.0], [2.0, 0.0]])
    assert cosine_similarity(ref, approx, dim=-1).tolist() == pytest.approx([1.0, -1.0, 0.0])
    cols = cosine_similarity(ref, approx, dim=0)
    assert cols.shape == (2,)
    batch = torch.randn(4, 3, 5)
    assert cosine_similarity(batch, batch, dim=1).shape == (4, 5)


def test_mixed_dtypes_and_errors():
    ref = torch.randn(8)
    assert sqnr_db(ref, ref.half()) > 50
    with pytest.raises(InputError, match="shape"):
        mse(torch.zeros(3), torch.zeros(4))
    with pytest.raises(InputError, match="two tensors"):
        mse([1.0], torch.zeros(1))
    with pytest.raises(InputError, match="out of range"):
        cosine_similarity(ref, ref, dim=3)


def test_prediction_agreement_is_argmax_or_the_sign_of_a_single_value():
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    flipped = logits.clone()
    flipped[0] = torch.tensor([0.9, 0.1])
    assert prediction_rule(logits) == "argmax" and prediction_agreement(logits, flipped) == 75.0
    single = torch.tensor(
        [[0.5], [-1.0], [2.0], [-0.1]]
    )  # one logit per sample: its sign is the decision
    assert prediction_rule(single) == prediction_rule(single[:, 0]) == "sign"
    assert (
        prediction_agreement(single, single * 0.5) == 100.0
    )  # argmax of one value would always agree
    assert prediction_agreement(single, torch.tensor([[0.4], [0.2], [1.0], [0.3]])) == 50.0
    assert prediction_agreement(single[:, 0], -single[:, 0]) == 0.0
    assert math.isnan(prediction_agreement(torch.tensor(1.0), torch.tensor(1.0)))
