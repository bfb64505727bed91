"""Observer.share: after a merge over ranks, counts divided by the number of ranks so a
later merge counts the shared statistics once; the range itself never moves."""

from __future__ import annotations

import pytest
import torch
from helpers import heavy_tailed

from quantlens.core.observers import get_observer
from quantlens.errors import InputError


@pytest.mark.parametrize(
    "name", ["minmax", "moving_average", "percentile", "mse", "meanstd", "auto"]
)
def test_share_keeps_the_range_and_divides_the_counts(name):
    obs = get_observer(name)
    for batch in heavy_tailed(4 * 2048, seed=1).reshape(4, 2048).unbind(0):
        obs.update(batch)
    before = [t.clone() for t in obs.range()]
    obs.share(2)
    after = obs.range()
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(before, after))
    if name == "moving_average":
        assert obs.batches == 2.0
    if name == "meanstd":
        assert obs.count == 4 * 2048 / 2


def test_share_needs_a_positive_number_of_ranks():
    with pytest.raises(InputError, match="parts must be a positive number of ranks, got 0"):
        get_observer("minmax").share(0)
