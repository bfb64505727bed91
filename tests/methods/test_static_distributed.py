"""Static calibration under torch.distributed: ranks that each see part of the calibration
set convert with the quantization parameters of one process that saw all of it.

Each test spawns a gloo process group on 127.0.0.1 (``helpers.run_ranks``)."""

from __future__ import annotations

import pytest
import torch
from helpers import run_ranks

import quantlens as ql
from quantlens import zoo

pytestmark = pytest.mark.slow  # each test starts 2-3 Python processes


def _calib_batches() -> list[torch.Tensor]:
    return list(
        zoo.load_dataset("digits", split="calib").inputs.split(32)
    )  # 8 batches of (32, 1, 8, 8)


def _qparams(model: torch.nn.Module) -> dict[str, list[float]]:
    """Every scale and zero point of an int8 model (activations and weights), as floats."""
    out = {}
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            continue
        if value.is_quantized:
            per_channel = value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
            out[key + ":scale"] = (
                value.q_per_channel_scales() if per_channel else torch.tensor([value.q_scale()])
            ).tolist()
        elif "scale" in key or "zero_point" in key:
            out[key] = value.double().flatten().tolist()
    return out


def _quantize(
    batches: list[torch.Tensor], observer: str, sync: bool = True
) -> dict[str, list[float]]:
    config = ql.Static(observer=observer, sync=sync)
    return _qparams(ql.quantize(zoo.load_model("digits-cnn"), config, calib_data=batches))


def _static_rank(rank: int, world: int, observer: str, bounds: list[int], sync: bool = True):
    return _quantize(_calib_batches()[bounds[rank] : bounds[rank + 1]], observer, sync)


def _assert_ranks_agree(results: list) -> dict[str, list[float]]:
    for ok, value in results:
        assert ok, value
    first = results[0][1]
    for _, other in results[1:]:
        assert other == first  # bit for bit: every rank converts to the same int8 model
    return first


def _max_rel_diff(a: dict[str, list[float]], b: dict[str, list[float]]) -> float:
    assert a.keys() == b.keys()
    worst = 0.0
    for key, value in a.items():
        if "zero_point" in key:
            continue
        x, y = torch.tensor(value), torch.tensor(b[key])
        worst = max(worst, float(((x - y).abs() / y.abs().clamp(min=1e-12)).max()))
    return worst


def test_minmax_on_two_ranks_equals_one_process_on_all_data(one_thread):
    whole = _quantize(_calib_batches(), "minmax")
    merged = _assert_ranks_agree(run_ranks(_static_rank, 2, "minmax", [0, 4, 8]))
    assert merged == whole
    # without merging, rank 0 keeps the ranges of its own half, which differ from the whole
    alone = run_ranks(_static_rank, 2, "minmax", [0, 4, 8], False)
    assert alone[0][0] and alone[0][1] != whole


# (entropy is left out: its KL threshold moves 12-17% on digits-cnn when one process only
# reorders the batches, so no merge can promise 1% of "the" single-process scale)
@pytest.mark.parametrize("observer", ["histogram", "percentile"])
def test_histogram_observers_on_two_ranks_within_one_percent(one_thread, observer):
    whole = _quantize(_calib_batches(), observer)
    merged = _assert_ranks_agree(run_ranks(_static_rank, 2, observer, [0, 4, 8]))
    assert _max_rel_diff(merged, whole) < 0.01


def test_auto_observer_keeps_one_choice_on_every_rank(one_thread):
    # each rank scores the candidates on its own first batch; the scores are averaged over
    # the ranks, so all keep the same candidate and convert to the same model
    whole = _quantize(_calib_batches(), "auto")
    merged = _assert_ranks_agree(run_ranks(_static_rank, 2, "auto", [0, 4, 8]))
    assert _max_rel_diff(merged, whole) < 0.01


def _scores_rank(rank: int, world: int):
    from quantlens.methods.int8_choice import _merged_scores

    local = [
        {"mse": 10.0, "minmax": 5.0},
        {"mse": 0.0, "minmax": 8.0},
        {"mse": float("-inf"), "minmax": 9.0},
    ]
    return _merged_scores(local[rank])


def test_auto_scores_are_averaged_over_ranks(one_thread):
    # rank 0 alone would keep mse (10 > 5); over the ranks minmax wins (-inf counts as -1000 dB)
    results = run_ranks(_scores_rank, 3)
    for ok, value in results:
        assert ok and value == results[0][1], value
    scores, best = results[0][1]
    assert best == "minmax" and scores == pytest.approx(
        {"mse": (10.0 - 1000.0) / 3, "minmax": 22.0 / 3}
    )


def test_uneven_split_over_three_ranks(one_thread):
    whole = _quantize(_calib_batches(), "minmax")
    merged = _assert_ranks_agree(run_ranks(_static_rank, 3, "minmax", [0, 1, 3, 8]))
    assert merged == whole
    hist_whole = _quantize(_calib_batches(), "histogram")
    hist = _assert_ranks_agree(run_ranks(_static_rank, 3, "histogram", [0, 1, 3, 8]))
    assert _max_rel_diff(hist, hist_whole) < 0.01


def _failing_rank(rank: int, world: int) -> dict[str, list[float]]:
    if rank == 1:
        raise ValueError("rank 1 could not read its calibration shard")
    return _static_rank(rank, world, "minmax", [0, 4, 8])


def test_a_failing_rank_stops_the_others_with_one_error(one_thread, monkeypatch):
    monkeypatch.setenv("QUANTLENS_SYNC_TIMEOUT", "5")
    results = run_ranks(_failing_rank, 2, timeout=40)
    assert results[1] == (False, "ValueError: rank 1 could not read its calibration shard")
    ok, message = results[0]
    assert not ok
    assert message.startswith(
        "DistributedError: rank 0 of 2: merging statistics across ranks failed ("
    )
    assert message.endswith(
        "another rank failed or did not reach this step within 5 s: see that rank's error"
    )
    assert "\n" not in message
