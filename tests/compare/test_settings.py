"""The settings objects: the flat keywords of ``ql.compare`` map onto them, the objects
themselves are accepted, and a setting given twice or out of range fails before any row."""

from __future__ import annotations

import pytest
import torch

import quantlens as ql
from quantlens.compare import Budget, DataSettings, Hooks, Measure, Timing
from quantlens.compare.settings import from_options, settings_from
from quantlens.errors import InputError


def _tiny():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    return model.eval(), (x, model(x).argmax(-1).detach())


def test_flat_keywords_become_the_settings_objects():
    options = {"calib_data": "c", "reps": 5, "memory": False, "on_row": print, "threads": 2}
    data, timing, measure, hooks = settings_from("d", {}, options, "compare")
    assert data == DataSettings("d", calib_data="c")
    assert timing == Timing(reps=5, threads=2)
    assert measure == Measure(memory=False) and hooks == Hooks(on_row=print)
    assert options == {}  # every keyword consumed


def test_a_setting_given_twice_or_unknown_is_refused():
    with pytest.raises(InputError, match="reps given both as keyword"):
        from_options(Timing, Timing(reps=3), {"reps": 5})
    with pytest.raises(InputError, match="calib_data given both"):
        settings_from(DataSettings("d"), {}, {"calib_data": "c"}, "compare")
    with pytest.raises(TypeError, match="compare\\(\\) got an unexpected keyword argument 'rep'"):
        settings_from("d", {}, {"rep": 5}, "compare")
    with pytest.raises(InputError, match="expected a Timing, got Measure"):
        from_options(Timing, Measure(), {})


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: Timing(reps=0), "reps must be an integer >= 1"),
        (lambda: Timing(warmup=-1), "warmup"),
        (lambda: DataSettings(None, qat_epochs=0), "qat_epochs"),
        (lambda: Budget(max_accuracy_drop=float("nan")), "max_accuracy_drop must be a finite"),
        (lambda: Budget(objective="speed"), "objective must be one of latency, size"),
    ],
)
def test_settings_check_their_ranges(make, words):
    with pytest.raises(InputError, match=words):
        make()


def test_compare_takes_the_objects_and_records_them():
    model, data = _tiny()
    started = []
    report = ql.compare(
        model,
        ["w8"],
        data=DataSettings(data),
        timing=Timing(reps=2, warmup=0),
        measure=Measure(memory=False, layer_errors=False),
        budget=Budget(max_accuracy_drop=5.0, objective="size"),
        hooks=Hooks(command="a test", on_start=lambda name, i, n: started.append(name)),
    )
    c = report.comparison
    assert started == ["float", "w8"] and [r.name for r in c.rows] == ["float", "w8"]
    assert (c.settings.reps, c.settings.warmup, c.settings.memory) == (2, 0, False)
    assert c.settings.calibration == "on the evaluation data (no calib_data given)"
    assert c.budget == Budget(5.0, "size") and report.objective == "size"
    assert c.command == "a test" and c.layer_errors == {} and c.rows[1].ok
    assert report.recommended is c.rows[1]  # w8 is smaller and within 5 points


def test_compare_refuses_a_setting_given_twice_before_running():
    model, data = _tiny()
    with pytest.raises(InputError, match="reps given both"):
        ql.compare(model, ["w8"], data=data, timing=Timing(reps=2), reps=3)
