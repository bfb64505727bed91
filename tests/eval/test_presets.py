import pytest

import quantlens as ql
from quantlens.errors import UnknownNameError
from quantlens.eval.presets import PRESETS, check_names, default_methods, make_config, sweep_configs


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as info:
        check_names(["static", "w3"])
    assert "'w3'" in str(info.value)
    for name in PRESETS:
        assert name in str(info.value)


def test_presets_build_their_configs():
    assert make_config("static") == ql.Static()
    assert make_config("qat4") == ql.QAT(bits=4)
    assert set(default_methods()) <= set(PRESETS)


def test_sweep_is_the_product_of_the_grid():
    configs = sweep_configs("static")
    assert len(configs) == 6
    assert configs["observer=minmax,per_channel=False"] == ql.Static(observer="minmax", per_channel=False)
    custom = sweep_configs("static", {"backend": ("x86", "qnnpack")})
    assert [c.backend for c in custom.values()] == ["x86", "qnnpack"]
    with pytest.raises(UnknownNameError, match="sweepable"):
        sweep_configs("nope")
