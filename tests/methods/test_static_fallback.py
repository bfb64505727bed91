"""Static's automatic back-off: regions left float when the int8 output strays from float."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from helpers import assert_similar, random_tensor
from torch import nn

import quantlens as ql
from quantlens.methods import int8_fallback


class Offset(nn.Module):
    """``b``'s output carries a large constant offset that the root subtracts: its own int8
    output is close to float (high SQNR), the model's output is not. The root has
    data-dependent Python, so Static captures the regions ``a``, ``b`` and ``c``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.b = nn.Linear(32, 8)
        self.c = nn.Linear(16, 8)
        with torch.no_grad():
            self.b.weight.mul_(0.05)
            self.b.bias.fill_(100.0)

    def forward(self, x):
        if x.sum() > -1e9:  # torch.fx cannot trace this
            y = self.b(self.a(x)) - 100.0
        return y + 0.01 * self.c(x)


CALIB = [random_tensor(16, 16, seed=s) for s in range(3)]
TEST = random_tensor(32, 16, seed=9)


def _quantize(**kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qm = ql.quantize(Offset().eval(), ql.Static(observer="minmax", **kwargs), calib_data=CALIB)
    return qm, [str(w.message) for w in caught]


@pytest.mark.slow
def test_the_costly_region_is_left_float_with_its_reason(tmp_path):
    model = Offset().eval()
    qm, caught = _quantize()
    records = {r.name: r for r in qm.quantlens_summary.records}
    assert records["b.module"].action == "float"
    assert re.fullmatch(
        r"left float: output cosine -?0\.\d\d -> 1\.00 with it in float \(agreement floor 0\.9\)",
        records["b.module"].reason,
    )
    assert records["c.module"].action == "quantized" and records["a.0"].action == "quantized"
    assert any(n.startswith("auto_fallback: left 1 of 3") for n in qm.quantlens_summary.notes)
    assert not any("agrees with float at cosine" in m for m in caught)
    with torch.no_grad():
        assert_similar(qm(TEST), model(TEST), min_cosine=0.99)
    # the checkpoint rebuilds the same regions float
    ql.save(qm, tmp_path / "ck")
    loaded = ql.load(tmp_path / "ck", model=Offset())
    assert isinstance(loaded.b.module, nn.Linear)
    with torch.no_grad():
        assert torch.equal(loaded(TEST), qm(TEST))


@pytest.mark.slow
def test_auto_fallback_off_keeps_every_region_int8_and_warns():
    model = Offset().eval()
    qm, caught = _quantize(auto_fallback=False)
    assert {r.name for r in qm.quantlens_summary.quantized} == {"a.0", "b.module", "c.module"}
    assert any("agrees with float at cosine" in m for m in caught)
    with torch.no_grad():
        out, ref = qm(TEST), model(TEST)
    assert torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0) < 0.5


class _Sum(nn.Module):
    """Output = the sum of its parts; each part's "int8" version adds a known error."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.parts = nn.ModuleList(nn.Identity() for _ in range(n))

    def forward(self, x):
        return sum(p(x) for p in self.parts)


class _Noisy(nn.Module):
    def __init__(self, noise: torch.Tensor) -> None:
        super().__init__()
        self.noise = noise

    def forward(self, x):
        return x + self.noise


def test_back_off_floats_the_costliest_first_and_stops_at_the_floor():
    x = random_tensor(64, seed=1)
    model = _Sum(4)
    ref = model(x)
    big, small = random_tensor(64, seed=2, scale=2.0), random_tensor(64, seed=3, scale=0.05)
    for i, noise in enumerate((small, big, small, big * 1.5)):
        model.parts[i] = _Noisy(noise)
    floats = {f"parts.{i}": nn.Identity() for i in range(4)}
    done = int8_fallback.back_off(model, floats, (x,), ref, floor=0.99, max_fraction=1.0)
    assert [d.name for d in done] == ["parts.3", "parts.1"]  # then it agrees: stop
    assert done[0].cosine_before < done[0].cosine_after < done[1].cosine_after
    assert done[1].cosine_after >= 0.99
    assert isinstance(model.parts[3], nn.Identity) and isinstance(model.parts[0], _Noisy)
    # at most a share of the regions; nothing to do above the floor
    model = _Sum(4)
    for i, noise in enumerate((small, big, small, big * 1.5)):
        model.parts[i] = _Noisy(noise)
    assert len(int8_fallback.back_off(model, floats, (x,), ref, floor=0.99)) == 2
    assert int8_fallback.back_off(model, floats, (x,), ref, floor=0.5) == []
