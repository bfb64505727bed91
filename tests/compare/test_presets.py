import pytest

import quantlens as ql
from quantlens import zoo
from quantlens.compare import presets
from quantlens.compare.presets import (
    PRESETS,
    check_names,
    default_methods,
    engines_here,
    make_config,
    parse_grid,
    sweep_configs,
)
from quantlens.errors import ConfigError, UnknownNameError


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


def test_weight_only_presets_cover_the_convolutions_of_a_cnn():
    cnn, lstm = zoo.load_model("digits-cnn"), zoo.load_model("digits-lstm")
    assert (
        make_config("w8").modules is None
    )  # no model: the preset as listed (WeightOnly's default)
    assert make_config("w8", lstm) == ql.WeightOnly(bits=8, group_size=None)
    assert make_config("w4", lstm) == ql.WeightOnly(bits=4, group_size=32)
    assert make_config("w8", cnn) == ql.WeightOnly(
        bits=8, group_size=None, modules=("linear", "conv2d")
    )
    assert make_config("w4", cnn) == ql.WeightOnly(
        bits=4, group_size=None, modules=("linear", "conv2d")
    )
    assert make_config("static", cnn) == ql.Static()
    summary = ql.quantize(cnn, make_config("w4", cnn)).quantlens_summary
    assert len(summary.quantized) == 7  # 6 Conv2d + fc (Linear-only: just fc)


def test_sweep_is_the_product_of_the_grid_and_varies_the_backend():
    configs = sweep_configs("static")
    assert len(configs) == 3 * 2 * len(engines_here())
    engine = engines_here()[0]
    assert configs[f"observer=minmax,per_channel=False,backend={engine}"] == ql.Static(
        observer="minmax", per_channel=False, backend=engine
    )
    assert {c.backend for c in sweep_configs("qat").values()} == set(engines_here())
    custom = sweep_configs("static", {"backend": ("x86", "qnnpack")})
    assert [c.backend for c in custom.values()] == ["x86", "qnnpack"]
    with pytest.raises(UnknownNameError, match="sweepable"):
        sweep_configs("nope")


def test_the_swept_engines_are_those_this_build_has_in_backend_order_without_fbgemm(monkeypatch):
    monkeypatch.setattr(
        presets, "available_engines", lambda: ["qnnpack", "fbgemm", "onednn", "x86"]
    )
    assert engines_here() == ("x86", "onednn", "qnnpack")
    monkeypatch.setattr(presets, "available_engines", lambda: ["fbgemm", "qnnpack"])
    assert engines_here() == ("qnnpack",)
    monkeypatch.setattr(presets, "available_engines", list)
    assert engines_here() == ("x86",)  # none reported: the default backend


def test_parse_grid_reads_cli_entries():
    grid = parse_grid(
        ["observer=minmax,mse", "per_channel=true,false", "backend=x86,onednn"], "static"
    )
    assert grid == {
        "observer": ("minmax", "mse"),
        "per_channel": (True, False),
        "backend": ("x86", "onednn"),
    }
    configs = sweep_configs("static", grid)
    assert (
        len(configs) == 8
        and configs["observer=mse,per_channel=False,backend=onednn"].backend == "onednn"
    )
    w = parse_grid(["bits=8,4", "group_size=none,16", "modules=linear+conv2d"], "w4")
    assert w == {"bits": (8, 4), "group_size": (None, 16), "modules": (("linear", "conv2d"),)}


@pytest.mark.parametrize(
    "tokens, match",
    [
        (["observer"], "not key=value"),
        (["observer="], "not key=value"),
        (["bits=8,4"], "Static has no setting 'bits'; settings: .*backend"),
        (["observer=minmax", "observer=mse"], "given twice"),
    ],
)
def test_parse_grid_errors_are_one_line(tokens, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_grid(tokens, "static")
    assert "\n" not in str(info.value)


def test_a_bad_grid_value_names_the_combination():
    with pytest.raises(ConfigError, match=r"sweep setting backend=arm: unknown backend 'arm'"):
        sweep_configs("static", parse_grid(["backend=arm"], "static"))
    with pytest.raises(ConfigError, match=r"observer=nope.*minmax"):
        sweep_configs("static", {"observer": ("nope",)})
