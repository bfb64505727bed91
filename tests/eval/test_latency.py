import pytest
import torch
from torch import nn

from quantlens.errors import InputError
from quantlens.eval.latency import measure_latency, percentile


def test_percentile_is_nearest_rank():
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == 4.0
    assert percentile([7.0], 95) == 7.0
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 95) == 95.0


def test_measure_latency_counts_and_derives_throughput():
    model = nn.Linear(16, 4)
    r = measure_latency(model, torch.rand(32, 16), reps=7, warmup=2, threads=1)
    assert r.reps == 7 and len(r.times_ms) == 7 and r.warmup == 2
    assert r.batch_size == 32 and r.threads == 1
    assert r.p95_ms >= r.median_ms > 0
    assert r.items_per_s == pytest.approx(32 / (r.median_ms / 1e3))


def test_threads_are_restored_and_training_mode_kept():
    before = torch.get_num_threads()
    model = nn.Linear(4, 4).train()
    measure_latency(model, torch.rand(2, 4), reps=1, threads=1)
    assert torch.get_num_threads() == before and model.training


def test_accepts_labelled_pairs_and_kwargs_batches():
    class KW(nn.Module):
        def forward(self, input_ids, attention_mask):
            return input_ids.float() * attention_mask

    ids = torch.ones(3, 5, dtype=torch.long)
    assert (
        measure_latency(KW(), [{"input_ids": ids, "attention_mask": ids}], reps=2).batch_size == 3
    )
    assert (
        measure_latency(nn.Linear(4, 2), (torch.rand(6, 4), torch.zeros(6)), reps=2).batch_size == 6
    )


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError, match="reps"):
        measure_latency(nn.Linear(2, 2), torch.rand(1, 2), reps=0)
    with pytest.raises(InputError, match="threads"):
        measure_latency(nn.Linear(2, 2), torch.rand(1, 2), reps=1, threads=0)
