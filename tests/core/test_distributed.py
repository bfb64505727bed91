"""Process-group helpers and observers merged over ranks (gloo on 127.0.0.1, forked ranks)."""

from __future__ import annotations

import time

import pytest
import torch
from helpers import heavy_tailed, run_ranks

from quantlens.core import distributed
from quantlens.core.observers import AutoObserver, get_observer
from quantlens.errors import DistributedError, InputError

NAMES = ("minmax", "moving_average", "percentile", "mse", "meanstd", "auto")


def _batches() -> list[torch.Tensor]:
    return list(
        heavy_tailed(6 * 4096, seed=3).reshape(6, 8, 512).unbind(0)
    )  # 6 batches of (8, 512)


def _observe(batches: list[torch.Tensor], axis: int | None) -> dict[str, object]:
    observers = {name: get_observer(name, axis=axis) for name in NAMES}
    for batch in batches:
        for obs in observers.values():
            obs.update(batch)
    return observers


def _summary(observers: dict[str, object]) -> dict[str, list[float]]:
    out = {name: [t.tolist() for t in obs.range()] for name, obs in observers.items()}
    ms = observers["meanstd"]
    out["meanstd:count"] = [float(ms.count)]
    out["moving_average:batches"] = [float(observers["moving_average"].batches)]
    out["mse:total"] = [float(observers["mse"].hist.counts.sum())]
    return out


def _rank(rank: int, world: int, bounds: list[int], axis: int | None) -> dict[str, list[float]]:
    observers = _observe(_batches()[bounds[rank] : bounds[rank + 1]], axis)
    for obs in observers.values():
        obs.sync()
    return _summary(observers)


def test_outside_a_group_nothing_changes(monkeypatch):
    t = torch.tensor([1.0, -2.0])
    assert distributed.all_reduce(t, "min") is t and t.tolist() == [1.0, -2.0]
    assert (
        not distributed.is_distributed()
        and distributed.world_size() == 1
        and distributed.rank() == 0
    )
    obs = get_observer("mse")
    obs.update(torch.arange(10.0))
    before = obs.hist.counts.clone()
    obs.sync()
    assert torch.equal(obs.hist.counts, before)
    with pytest.raises(InputError, match="op must be one of"):
        distributed.all_reduce(t, "mean")
    monkeypatch.setenv("QUANTLENS_SYNC_TIMEOUT", "soon")
    with pytest.raises(InputError, match="QUANTLENS_SYNC_TIMEOUT must be a positive number"):
        distributed.default_timeout()


@pytest.mark.slow
@pytest.mark.parametrize("axis", [None, 0])
def test_three_uneven_ranks_one_empty_merge_to_one_process(one_thread, axis):
    bounds = [0, 1, 1, 6]  # rank 1 sees no batch at all
    results = run_ranks(_rank, 3, bounds, axis)
    for ok, value in results:
        assert ok, value
    merged = results[0][1]
    assert results[1][1] == merged and results[2][1] == merged  # identical on every rank
    batches = _batches()
    whole = _summary(_observe(batches, axis))
    assert merged["minmax"] == whole["minmax"]  # exact
    assert merged["meanstd:count"] == whole["meanstd:count"]
    assert merged["mse:total"] == pytest.approx(
        whole["mse:total"], rel=1e-12
    )  # re-binning keeps every count
    for name in ("meanstd", "percentile", "mse", "auto"):
        for got, want in zip(merged[name], whole[name]):
            got, want = torch.tensor(got), torch.tensor(want)
            assert ((got - want).abs() / want.abs()).max() < 0.01, name
    # moving averages combine by their batch counts: 1 batch on rank 0, 5 on rank 2
    parts = [
        _observe(batches[:1], axis)["moving_average"],
        _observe(batches[1:], axis)["moving_average"],
    ]
    expected = (parts[0].avg_max * 1 + parts[1].avg_max * 5) / 6
    assert merged["moving_average:batches"] == [6.0]
    assert torch.allclose(torch.tensor(merged["moving_average"][1]), expected, rtol=1e-6)


def _auto_rank(rank: int, world: int) -> list:
    obs = AutoObserver(candidates=("mse", "minmax"))
    obs.update(_batches()[rank])
    obs.sync()
    return [
        obs.min_val.tolist(),
        obs.observers["minmax"].range()[1].tolist(),
        obs.observers["mse"].hist.counts.sum().item(),
    ]


@pytest.mark.slow
def test_auto_observer_merges_each_candidate(one_thread):
    results = run_ranks(_auto_rank, 2)
    assert results[0] == results[1] and results[0][0], results
    lo, hi, total = results[0][1]
    both = torch.cat(_batches()[:2])
    assert lo == [float(both.amin())] and hi == float(both.amax())  # min_val is (rows,)
    assert total == both.numel()


def _stuck_rank(rank: int, world: int) -> str:
    obs = get_observer("minmax")
    obs.update(torch.ones(4))
    if rank == 1:
        time.sleep(2.5)  # reaches the merge only after rank 0 gave up waiting (1 s)
        return "late"
    try:
        obs.sync(timeout=1)  # had it waited for rank 1, it would succeed
    except DistributedError as exc:
        return str(exc)
    return "no error"


@pytest.mark.slow
def test_a_stuck_rank_times_out_with_one_error(one_thread):
    results = run_ranks(_stuck_rank, 2, timeout=30)
    ok, message = results[0]
    assert ok and message.startswith("rank 0 of 2: merging statistics across ranks failed (")
    assert message.endswith("within 1 s: see that rank's error") and "\n" not in message
