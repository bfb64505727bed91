"""The thread policy of small kernel calls: it restores the caller's thread count, runs
"one" on one thread, and "auto" keeps whichever choice its timings say is faster."""

from __future__ import annotations

import pytest
import torch
from helpers import random_tensor
from torch import nn

from quantlens import QScheme, quantize_tensor
from quantlens.errors import UnknownNameError
from quantlens.nn import QLinear
from quantlens.nn.dynamic_linear import DynamicLinear
from quantlens.nn.threads import ThreadChoice, run_single, run_with_policy


@pytest.fixture
def two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


class _Layer:
    def __init__(self, policy: str) -> None:
        self.thread_policy, self._cache = policy, {}


def test_run_single_restores_the_count_even_when_the_call_raises(two_threads):
    assert run_single(torch.get_num_threads) == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="boom"):
        run_single(lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("policy, inside", [("one", {1}), ("all", {2}), ("auto", {1, 2})])
def test_policies_choose_the_count_and_restore_it(two_threads, policy, inside):
    layer = _Layer(policy)
    seen = [run_with_policy(layer, 1, 1 << 20, torch.get_num_threads) for _ in range(8)]
    assert set(seen) == inside
    assert torch.get_num_threads() == 2
    # outside the small-work range every policy leaves torch's count alone
    assert run_with_policy(layer, 1, 1 << 30, torch.get_num_threads) == 2


def test_auto_keeps_the_faster_choice_and_switches_when_it_slows():
    choice = ThreadChoice()
    for _ in range(6):  # exploring: alternates, one thread first
        single = choice.next_single()
        choice.record(single, 1.0 if single else 3.0)
    assert choice.single and choice.next_single()
    picks = []
    for _ in range(8):  # one thread turns slow: the other is tried at once, and soon kept
        single = choice.next_single()
        picks.append(single)
        choice.record(single, 10.0 if single else 3.0)
    assert picks[1] is False  # the probe right after the first slow call
    assert not choice.single


def test_layers_take_the_policy_and_reject_unknown_ones(two_threads):
    lin = nn.Linear(256, 512)
    w4 = QScheme(bits=4, symmetric=False, granularity="per_group", group_size=128)
    layers = [
        QLinear.from_float(lin, quantize_tensor(lin.weight.detach(), w4)),
        DynamicLinear.from_float(lin),
    ]
    x = random_tensor(1, 256)
    for layer in layers:
        assert layer.thread_policy == "auto"
        ref = layer(x)
        for policy in ("one", "all", "auto"):
            layer.thread_policy = policy
            for _ in range(5):
                torch.testing.assert_close(layer(x), ref, atol=1e-6, rtol=1e-6)
            assert torch.get_num_threads() == 2
        with pytest.raises(UnknownNameError, match="thread policy"):
            layer.thread_policy = "some"
