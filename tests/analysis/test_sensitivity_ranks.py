"""sensitivity under a process group: the per-layer passes are spread over the ranks (gloo on
127.0.0.1, forked ranks) and every rank ends with the ranking of one process."""

from __future__ import annotations

import pytest
import torch
from analysis_helpers import make_mlp
from helpers import generator, run_ranks

import quantlens as ql
from quantlens.analysis import sensitivity

STATIC = ql.Static(observer="minmax", calib_batches=1)  # requantize: one ql.quantize per pass


def _table(model, data, config, reverse=False, metric=None) -> list[tuple]:
    res = sensitivity(model, data, config, reverse=reverse, calib_data=data[0][:64], metric=metric)
    return [(r.name, r.kind, r.params, r.bytes_quant, round(r.value, 6)) for r in res.rows]


def _rank(rank: int, world: int, model, data, config, reverse) -> list[tuple]:
    return _table(model, data, config, reverse)


@pytest.mark.slow
def test_static_ranking_over_2_ranks_equals_one_process(digits_model, digits_test_128):
    alone = _table(digits_model, digits_test_128, STATIC)
    assert len(alone) >= 4
    results = run_ranks(_rank, 2, digits_model, digits_test_128, STATIC, False, timeout=120)
    assert [got for _, got in results] == [alone, alone], results


@pytest.mark.parametrize(("world", "reverse"), [(3, False), (2, True)])
def test_swap_ranking_over_ranks_equals_one_process(world, reverse, toy_method):
    model = make_mlp()  # 3 layers: 1 per rank over 3 ranks, 2 + 1 over 2
    data = (torch.randn(128, 16, generator=generator(1)), torch.randint(0, 8, (128,)))
    alone = _table(model, data, toy_method(bits=2), reverse)
    assert len(alone) == 3
    results = run_ranks(_rank, world, model, data, toy_method(bits=2), reverse, timeout=60)
    assert [got for _, got in results] == [alone] * world, results


def _failing_rank(rank: int, world: int, model, data, config) -> str:
    calls = []

    def metric(outputs, labels) -> float:  # fails in rank 1's first pass (after float, full)
        calls.append(1)
        if torch.distributed.get_rank() == 1 and len(calls) == 3:
            raise RuntimeError("metric broke on rank 1")
        return float((outputs.argmax(-1) == labels).float().mean())

    _table(model, data, config, metric=metric)
    return "finished"


def test_a_failing_pass_gives_the_other_ranks_one_error(toy_method):
    data = (torch.randn(128, 16, generator=generator(2)), torch.randint(0, 4, (128,)))
    (ok0, err0), (ok1, err1) = run_ranks(
        _failing_rank, 2, make_mlp(), data, toy_method(bits=2), timeout=60
    )
    assert not ok0 and err0.startswith("DistributedError: rank 0 of 2: rank 1 failed"), err0
    assert "metric broke on rank 1" in err0
    assert not ok1 and "metric broke on rank 1" in err1


def _plan_rank(rank: int, world: int, model, data, config) -> tuple:
    from quantlens.analysis.planner import search_plan

    plan = search_plan(model, data, method=config, candidates=(8, 4, 2, None), min_sqnr_db=20)
    return plan.bits, plan.table.loss, plan.measured_value


def test_planner_passes_over_3_ranks_give_the_plan_of_one_process(toy_method):
    model = make_mlp()
    data = torch.randn(128, 16, generator=generator(3))
    alone = _plan_rank(0, 1, model, data, toy_method(bits=8))
    results = run_ranks(_plan_rank, 3, model, data, toy_method(bits=8), timeout=60)
    assert [got for _, got in results] == [alone] * 3, results
