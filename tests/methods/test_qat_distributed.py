"""QAT under torch.distributed (gloo ranks forked on 127.0.0.1): DDP training of digits-cnn
against one process, BatchNorm statistics and ranges synchronised before convert, the same
int8 model and checkpoint on every rank, SyncBatchNorm, and a failing rank."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from helpers import generator, run_ranks
from torch import nn

import quantlens as ql
from quantlens import zoo
from quantlens.core import distributed
from quantlens.errors import ConfigError
from quantlens.methods.backends import torch_ao

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not built in"
)


class Tiny(nn.Module):
    """Conv-BN-ReLU, a Linear head: input (B, 1, 8, 8)."""

    def __init__(self, sync_bn: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 64, 10)
        if sync_bn:
            self.bn = nn.SyncBatchNorm(4)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def _x(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=generator(seed))


def _int8_state(qm: nn.Module) -> dict[str, list]:
    """Every tensor of the int8 model as plain lists: integer values and scales of the
    quantized weights, the float buffers (activation scales, zero points, biases)."""
    out = {}
    for name, t in qm.state_dict().items():
        if not isinstance(t, torch.Tensor):
            continue
        if t.is_quantized:
            per_channel = t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
            scales = t.q_per_channel_scales() if per_channel else torch.tensor([t.q_scale()])
            out[name] = [t.int_repr().tolist(), scales.tolist()]
        else:
            out[name] = t.tolist()
    return out


def _accuracy(model: nn.Module, data) -> float:
    with torch.no_grad():
        return (model(data.inputs).argmax(1) == data.labels).float().mean().item() * 100


# --- the acceptance run: digits-cnn, 2 ranks vs one process -----------------------------------


def _qat_digits(rank: int, world: int, prepared: nn.Module, out: str | None) -> dict:
    """QAT of digits-cnn for one epoch over 640 training samples (10 global batches of 64;
    each rank: its half of each), then convert and save; what the int8 model holds and
    scores."""
    torch.manual_seed(0)
    train, test = zoo.load_dataset("digits", "train"), zoo.load_dataset("digits", "test")
    qat = copy.deepcopy(prepared)
    x, y = train.as_pair()
    history = ql.train_qat(qat, (x[:640], y[:640]), epochs=1, lr=1e-3, progress=False)
    qm = ql.convert(qat.eval())
    if out is not None:
        ql.save(qm, out)
    return {
        "accuracy": _accuracy(qm, test),
        "state": _int8_state(qm),
        "train_loss": history[0]["train_loss"],
        "notes": list(qm.quantlens_summary.notes),
    }


@pytest.mark.slow
def test_ddp_qat_on_two_ranks_matches_one_process_and_converts_identically(
    one_thread, tmp_path, digits_cnn
):
    example = (zoo.load_dataset("digits", "train").inputs[:1],)
    prepared = ql.prepare_qat(digits_cnn, ql.QAT(), example_inputs=example)  # ranks inherit it
    one = _qat_digits(0, 1, prepared, None)
    results = run_ranks(_qat_digits, 2, prepared, str(tmp_path / "ckpt"), timeout=120)
    for ok, value in results:
        assert ok, value
    rank0, rank1 = results[0][1], results[1][1]
    assert rank0["state"] == rank1["state"]  # identical int8 weights, scales, zero points
    assert rank0["accuracy"] == rank1["accuracy"]
    assert abs(rank0["accuracy"] - one["accuracy"]) <= 0.3, (rank0["accuracy"], one["accuracy"])
    assert rank0["train_loss"] == rank1["train_loss"]  # reduced over the ranks
    assert any("synchronised over 2 ranks" in n for n in rank0["notes"])
    loaded = ql.load(tmp_path / "ckpt")  # rank 0 wrote it; rank 1 waited
    assert _int8_state(loaded) == rank0["state"]


# --- what sync_qat does, on a tiny model without DDP ------------------------------------------


def _sync_tiny(rank: int, world: int) -> dict:
    """Each rank trains its own copy on different data (no DDP), so BatchNorm statistics,
    ranges and (rank 1) weights differ; then sync_qat and convert."""
    qat = ql.prepare_qat(Tiny(), ql.QAT(), example_inputs=(_x(2, 0),))
    qat.train()
    samples = 32 * (rank + 1)  # rank 0 trains on 32 samples, rank 1 on 64
    with torch.no_grad():
        qat(_x(samples, rank) * (1 + 2 * rank))  # rank 1's activations are 3x larger
        if rank == 1:
            qat.conv.weight.add_(0.5)  # trained apart: sync_qat takes rank 0's weights
    bn = qat.conv.bn
    before = torch.stack([bn.running_mean, bn.running_var]).tolist()
    fq = next(m for m in qat.modules() if isinstance(m, torch_ao.CoreFakeQuantize))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        count = ql.sync_qat(qat, samples=samples)
    merged = {
        "bn": torch.stack([bn.running_mean, bn.running_var]).tolist(),
        "scale": fq.fq.scale.tolist(),
        "batches": fq.fq.observer.batches,
        "weight": qat.conv.weight.tolist(),
    }
    ql.sync_qat(qat)  # again: a merged state is counted once, not twice
    again = {"scale": fq.fq.scale.tolist(), "batches": fq.fq.observer.batches}
    return {
        "before": before,
        "merged": merged,
        "again": again,
        "count": count,
        "warned": [str(w.message) for w in caught],
        "int8": _int8_state(ql.convert(qat.eval())),
    }


def test_sync_qat_averages_batchnorm_by_samples_and_merges_every_range(one_thread):
    results = run_ranks(_sync_tiny, 2, timeout=60)
    for ok, value in results:
        assert ok, value
    r0, r1 = results[0][1], results[1][1]
    assert r0["before"] != r1["before"]
    expected = (torch.tensor(r0["before"]) * 32 + torch.tensor(r1["before"]) * 64) / 96
    for r in (r0, r1):
        assert torch.allclose(torch.tensor(r["merged"]["bn"]), expected, atol=1e-6)
        assert r["count"] >= 4  # the BatchNorm and the three ranges of the fused Conv, fc
        assert "different weights" in " ".join(r["warned"])
        assert r["again"]["scale"] == r["merged"]["scale"]  # nothing new seen: unchanged
        assert r["again"]["batches"] == r["merged"]["batches"] == 1.0  # counted once
    assert r0["merged"] == r1["merged"]
    assert r0["int8"] == r1["int8"]  # every rank converts to the same int8 model


def _convert_only(rank: int, world: int, sync: str) -> dict:
    distributed.all_reduce(torch.zeros(1), "sum")  # sync="off" has no collective of its own
    qat = ql.prepare_qat(Tiny(), ql.QAT(sync=sync), example_inputs=(_x(2, 0),))
    qat.train()
    with torch.no_grad():
        qat(_x(16, rank) * (1 + rank))
    return _int8_state(ql.convert(qat.eval()))


def test_convert_syncs_unless_sync_is_off(one_thread):
    synced = run_ranks(_convert_only, 2, "epoch", timeout=60)
    apart = run_ranks(_convert_only, 2, "off", timeout=60)
    assert all(ok for ok, _ in synced + apart), synced + apart
    assert synced[0][1] == synced[1][1]
    assert apart[0][1] != apart[1][1]  # each rank kept its own ranges


def _train_tiny(rank: int, world: int, sync: str) -> dict:
    qat = ql.prepare_qat(Tiny(), ql.QAT(sync=sync), example_inputs=(_x(2, 0),))
    ql.train_qat(qat, (_x(128, 3), torch.arange(128) % 10), epochs=1, lr=0.05)
    fqs = [m.fq for m in qat.modules() if isinstance(m, torch_ao.CoreFakeQuantize)]
    return {
        "ranges": [fq.scale.tolist() + fq.zero_point.tolist() for fq in fqs],
        "bn": qat.conv.bn.running_mean.tolist(),
    }


@pytest.mark.parametrize("sync", ["step", "epoch", "off"])
def test_train_qat_leaves_every_rank_with_the_same_ranges_unless_off(sync, one_thread):
    results = run_ranks(_train_tiny, 2, sync, timeout=60)
    for ok, value in results:
        assert ok, value
    same = results[0][1] == results[1][1]
    assert same == (sync != "off")  # each rank trained on its own half of every batch


def test_sync_mode_is_validated_and_outside_a_group_nothing_happens():
    with pytest.raises(ConfigError, match="unknown sync 'always'; choose one of: epoch, step"):
        ql.QAT(sync="always")
    qat = ql.prepare_qat(Tiny(), ql.QAT(), example_inputs=(_x(2, 0),))
    assert ql.sync_qat(qat) == 0


# --- how the training data is shared out ------------------------------------------------------


def _shares(rank: int, world: int) -> dict:
    from torch.utils.data import DataLoader, TensorDataset

    from quantlens.methods import qat_ranks

    ids = torch.arange(40)
    data = TensorDataset(ids.float()[:, None], ids)
    loader = qat_ranks.shard(DataLoader(data, batch_size=4, shuffle=True))
    pair = qat_ranks.shard((ids.float()[:, None], ids))
    listed = qat_ranks.shard(
        [(ids[i : i + 8].float()[:, None], ids[i : i + 8]) for i in (0, 8, 16)]
    )
    labels = lambda part, epoch: [b.labels.tolist() for b in part.epoch(epoch)]
    return {
        "loader": [labels(loader, 0), labels(loader, 1)],
        "dataset": [b.size for b in qat_ranks.shard(data).epoch(0)],
        "pair": labels(pair, 0),
        "list": labels(listed, 0),
    }


def test_training_data_is_shared_out_over_the_ranks(one_thread):
    results = run_ranks(_shares, 2, timeout=60)
    for ok, value in results:
        assert ok, value
    r0, r1 = results[0][1], results[1][1]
    flat = lambda batches: sorted(i for b in batches for i in b)
    for epoch in (0, 1):  # a DistributedSampler: disjoint halves, batches of 4 per rank
        assert flat(r0["loader"][epoch] + r1["loader"][epoch]) == list(range(40))
        assert [len(b) for b in r0["loader"][epoch]] == [4] * 5
    assert r0["loader"][0] != r0["loader"][1]  # set_epoch: a new order each epoch
    assert r0["dataset"] == [20] == r1["dataset"]  # a Dataset: batches of 64 per rank
    # a tensor pair: rank r takes r, r + 2, ... in batches of 32, so the two ranks together
    # step through the global batches of 64 of one process
    assert r0["pair"] == [list(range(0, 40, 2))] and r1["pair"] == [list(range(1, 40, 2))]
    # a list of 3 batches: batch i on rank i % 2; the ranks stop together after one step
    assert r0["list"] == [list(range(8))] and r1["list"] == [list(range(8, 16))]


# --- SyncBatchNorm: CPU training through quantlens' synchronised BatchNorm ---------------------


def _train_sync_bn(rank: int, world: int) -> dict:
    qat = ql.prepare_qat(Tiny(sync_bn=True), ql.QAT(sync="off"), example_inputs=(_x(2, 0),))
    labels = torch.arange(16) % 10
    ql.train_qat(qat, [(_x(16, 10 * s + rank), labels) for s in range(4)], epochs=1)
    bn = qat.conv.bn
    return {
        "bn": torch.stack([bn.running_mean, bn.running_var]).tolist(),
        "weight": qat.conv.weight.tolist(),
        "float_bn": [
            n for n, m in ql.convert(qat.eval()).named_modules() if "BatchNorm" in type(m).__name__
        ],
    }


def test_sync_batchnorm_trains_over_ranks_on_cpu_and_folds_at_convert(one_thread):
    results = run_ranks(_train_sync_bn, 2, timeout=60)
    for ok, value in results:
        assert ok, value
    r0, r1 = results[0][1], results[1][1]
    assert r0["bn"] == r1["bn"]  # batch statistics over both ranks, without quantlens' sync
    assert r0["weight"] == r1["weight"]  # one list of batches, split over the ranks by DDP
    assert r0["float_bn"] == [] == r1["float_bn"]  # folded into the int8 Conv


# --- a failing rank ------------------------------------------------------------------------------


def _fails_at_step_2(rank: int, world: int) -> str:
    qat = ql.prepare_qat(Tiny(), ql.QAT(), example_inputs=(_x(2, 0),))
    steps = []

    def loss(out, labels):
        steps.append(1)
        if rank == 1 and len(steps) == 2:
            raise ValueError("rank 1 broke at step 2")
        return F.cross_entropy(out, labels)

    ql.train_qat(qat, (_x(128, 0), torch.arange(128) % 10), epochs=2, loss=loss)
    return "finished"


def test_a_rank_failing_in_training_stops_the_others_with_one_distributed_error(
    one_thread, monkeypatch
):
    monkeypatch.setenv("QUANTLENS_SYNC_TIMEOUT", "10")
    results = run_ranks(_fails_at_step_2, 2, timeout=60)
    assert results[1] == (False, "ValueError: rank 1 broke at step 2")
    ok, message = results[0]
    assert not ok and message.startswith("DistributedError: rank 0 of 2: "), message
    assert "another rank failed" in message and message.endswith("see that rank's error")
