"""The data adapter refuses data that would give a silently wrong answer: no batch, empty
batches, NaN/Inf (with the count and the first position), forms it cannot read."""

import pytest
import torch
from helpers import generator
from torch import nn

from quantlens.core.data import check_finite, first_batch, iter_batches, run_batch
from quantlens.errors import InputError, QuantizationFailedError

X = torch.rand(10, 3, generator=generator(0))


def test_nan_count_and_first_position_in_a_tensor():
    bad = X.clone()
    bad[7, 2] = float("nan")
    bad[9, 0] = -float("inf")
    with pytest.raises(
        InputError,
        match=r"^data holds 2 NaN/Inf value\(s\); the first is nan at index \(7, 2\); clean",
    ):
        list(iter_batches(bad, batch_size=4))  # checked as a whole: positions in the tensor


def test_nan_in_a_later_batch_of_a_list_names_the_batch():
    bad = X[:4].clone()
    bad[3, 1] = float("inf")
    with pytest.raises(
        InputError,
        match=r"calib_data holds 1 NaN/Inf value\(s\) in batch 2; "
        r"the first is inf at index \(3, 1\)",
    ):
        list(iter_batches([X[:4], (X[:4], torch.zeros(4)), bad], what="calib_data"))


def test_nan_in_dict_batches_and_pairs():
    with pytest.raises(InputError, match="NaN/Inf"):
        list(iter_batches({"x": torch.tensor([[float("nan")]])}))
    with pytest.raises(InputError, match="NaN/Inf"):
        list(iter_batches((torch.tensor([[float("nan")]]), torch.zeros(1))))
    # integer inputs (token ids) and NaN-free data pass
    assert len(list(iter_batches({"input_ids": torch.ones(2, 3, dtype=torch.long)}))) == 1


@pytest.mark.parametrize(
    "data, words",
    [
        (torch.empty(0, 8), r"data has no samples \(input 0 has shape \(0, 8\)\)"),
        ([], "data is empty: it yielded no batch"),
        (iter([]), "data is empty"),
        ([torch.empty(0, 3)], r"data in batch 0 has no samples"),
        (torch.tensor(1.0), "0-d tensor"),
        (5, "cannot read batches from a int"),
        ("data.pt", "cannot read batches from a str"),
        (None, "no data given"),
    ],
)
def test_empty_and_unreadable_data(data, words):
    with pytest.raises(InputError, match=words):
        list(iter_batches(data))


def test_limit_zero_is_not_empty_data():
    assert list(iter_batches(X, limit=0)) == []


def test_first_batch_names_the_argument():
    with pytest.raises(InputError, match="eval_data is empty"):
        first_batch([], "eval_data")


def test_run_batch_turns_a_shape_mismatch_into_one_line():
    batch = first_batch(torch.rand(2, 5))
    with pytest.raises(
        InputError,
        match=r"the model cannot run on calib_data \(inputs \(2, 5\) float32: .*\); give inputs",
    ):
        run_batch(nn.Linear(3, 2), batch, "calib_data")


def test_check_finite_custom_error():
    with pytest.raises(QuantizationFailedError, match="out holds 1 NaN/Inf value.*; retry"):
        check_finite(
            torch.tensor([0.0, float("inf")]), "out", fix="retry", error=QuantizationFailedError
        )
    check_finite(torch.tensor([1, 2]), "ints are not checked")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"batch_size": -1}, "batch_size"),
        ({"limit": -1}, "limit must be"),
    ],
)
def test_batch_size_and_limit_range_checked(kwargs, words):
    with pytest.raises(InputError, match=words):
        list(iter_batches(X, **kwargs))


def test_observer_refuses_meta_and_float64_beyond_float32():
    from quantlens.core.observers import get_observer

    with pytest.raises(InputError, match="meta device"):
        get_observer("minmax").update(torch.ones(3, device="meta"))
    with pytest.raises(InputError, match="beyond float32's range"):
        get_observer("minmax").update(torch.tensor([1e300], dtype=torch.float64))
