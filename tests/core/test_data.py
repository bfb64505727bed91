import pytest
import torch

from quantlens.core.data import Batch, count_batches, first_batch, iter_batches
from quantlens.errors import InputError


def test_tensor_is_cut_into_batches():
    sizes = [b.size for b in iter_batches(torch.zeros(10, 3), batch_size=4)]
    assert sizes == [4, 4, 2]
    assert count_batches(torch.zeros(10, 3), batch_size=4) == 3


def test_pair_of_tensors_gives_inputs_and_labels():
    x, y = torch.randn(5, 2), torch.arange(5)
    batches = list(iter_batches((x, y), batch_size=2))
    assert [b.labels.tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert torch.equal(torch.cat([b.args[0] for b in batches]), x)


def test_list_of_batches_and_dataloader():
    x, y = torch.randn(6, 2), torch.arange(6)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    batches = list(iter_batches(loader))
    assert [b.size for b in batches] == [4, 2]
    assert batches[1].labels.tolist() == [4, 5]
    assert [b.labels for b in iter_batches([x[:3], x[3:]])] == [None, None]


def test_dict_batches_are_keyword_arguments_and_labels_are_split_off():
    batch = {"input_ids": torch.ones(2, 4, dtype=torch.long), "labels": torch.tensor([0, 1])}
    (b,) = list(iter_batches([batch]))
    assert set(b.kwargs) == {"input_ids"} and b.labels.tolist() == [0, 1]
    model = lambda input_ids: input_ids.sum()
    assert b.run(model) == 8


def test_limit_and_first_batch():
    assert len(list(iter_batches(torch.zeros(100, 1), batch_size=10, limit=3))) == 3
    assert first_batch(torch.zeros(7, 2)).size == 7


def test_batch_cast_leaves_integer_inputs_alone():
    b = Batch(args=(torch.zeros(2, dtype=torch.float16), torch.zeros(2, dtype=torch.long)))
    cast = b.to(torch.float32)
    assert cast.args[0].dtype == torch.float32 and cast.args[1].dtype == torch.long


@pytest.mark.parametrize("bad", [None, 3, "text", torch.tensor(1.0)])
def test_unusable_data_is_a_clear_error(bad):
    with pytest.raises(InputError):
        list(iter_batches(bad))


def test_empty_data_is_a_clear_error():
    with pytest.raises(InputError, match="empty"):
        first_batch([])
