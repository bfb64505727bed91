"""quantlens debug / sensitivity / inspect: thin commands over quantlens.analysis."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

import quantlens as ql
from quantlens import zoo
from quantlens.cli import _analysis, main
from quantlens.compare import presets
from quantlens.methods import WeightOnly
from quantlens.methods.base import config_from_dict

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: more threads only contend


def test_debug_prints_advice_and_writes_a_plan_quantize_applies(tmp_path, capsys):
    plan_path = tmp_path / "plan.json"
    code = main(
        [
            "debug",
            "digits-cnn",
            "--method",
            "w2",
            "--max-batches",
            "2",
            "--candidates",
            "8,4,2,float",
            "--plan-out",
            str(plan_path),
            "--plots",
            str(tmp_path / "plots"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "WeightOnly: accuracy" in out and "fc" in out
    assert "plan written to" in out
    cfg = config_from_dict(json.loads(plan_path.read_text()))
    qm = ql.quantize(zoo.load_model("digits-cnn"), cfg)  # the file is an ordinary config
    assert qm.quantlens_config == cfg
    assert (tmp_path / "plots" / "sensitivity.png").is_file() and (
        tmp_path / "plots" / "layer_sqnr.png"
    ).is_file()


def test_quantize_applies_the_plan_debug_wrote(tmp_path, capsys):
    method = tmp_path / "method.json"  # the convolutions too, per output channel
    method.write_text(
        json.dumps(WeightOnly(bits=4, group_size=None, modules=("linear", "conv2d")).to_dict())
    )
    plan_path = tmp_path / "plan.json"
    assert (
        main(
            [
                "debug",
                "digits-cnn",
                "--config",
                str(method),
                "--max-batches",
                "2",
                "--candidates",
                "8,4,2,float",
                "--max-drop",
                "0.5",
                "--plan-out",
                str(plan_path),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    planned = {c["name"]: c["bits"] for c in report["plan"]["layers"]}
    assert len(set(planned.values())) > 1  # a real mix of widths
    cfg = config_from_dict(json.loads(plan_path.read_text()))
    assert cfg.overrides or cfg.skip
    out = tmp_path / "ckpt"
    assert main(["quantize", "digits-cnn", "--config", str(plan_path), "-o", str(out)]) == 0
    capsys.readouterr()
    qm = ql.load(out)
    assert qm.quantlens_config == cfg
    for name, bits in planned.items():  # every layer stored at the width the plan chose
        module = qm.get_submodule(name)
        if bits is None:
            assert type(module).__name__ in ("Conv2d", "Linear")
        else:
            assert module.scheme.bits == bits, name


def test_debug_reports_plan_layers_missing_from_the_model(tmp_path, capsys):
    bad = WeightOnly(bits=4, group_size=32, overrides={"encoder.layer.0.*": WeightOnly(bits=8)})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad.to_dict()))
    code = main(["debug", "digits-cnn", "--config", str(path), "--max-batches", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "'encoder.layer.0.*'" in err and "match no module" in err


def test_the_config_file_is_read_once_and_a_preset_is_made_for_the_model(tmp_path, monkeypatch):
    path = tmp_path / "w4.json"
    path.write_text(json.dumps(WeightOnly(bits=4).to_dict()))
    reads, made = [], []
    monkeypatch.setattr(
        _analysis, "config_from_dict", lambda d: reads.append(d) or config_from_dict(d)
    )
    loaded = _analysis.Inputs(torch.nn.Conv2d(1, 1, 1), None, None, None)
    monkeypatch.setattr(_analysis, "load_inputs", lambda args: loaded)
    inputs, cfg = _analysis.inputs_and_config(argparse.Namespace(config=str(path), method=None))
    assert inputs is loaded and cfg == WeightOnly(bits=4) and len(reads) == 1
    monkeypatch.setattr(
        presets, "make_config", lambda name, model=None: made.append(model) or WeightOnly(bits=4)
    )
    _analysis.inputs_and_config(argparse.Namespace(config=None, method="w4"))
    assert made == [None, loaded.model]  # checked before the model loads, then made for it


def test_sensitivity_command_json_and_plot(tmp_path, capsys):
    code = main(
        [
            "sensitivity",
            "digits-cnn",
            "--method",
            "w4",
            "--max-batches",
            "2",
            "--json",
            "--plot",
            str(tmp_path / "s.png"),
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["metric"] == "accuracy"
    # the preset is made for the model, as in quantlens compare: a CNN's convolutions are measured
    # too
    assert {r["name"] for r in data["rows"]} == {
        "stem.0",
        "block1.conv1",
        "block1.conv2",
        "down.0",
        "block2.conv1",
        "block2.conv2",
        "fc",
    }
    assert [r["drop"] for r in data["rows"]] == sorted(
        (r["drop"] for r in data["rows"]), reverse=True
    )
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_inspect_float_and_checkpoint(tmp_path, capsys):
    qm = ql.quantize(zoo.load_model("digits-cnn"), WeightOnly(bits=4, group_size=32))
    ql.save(qm, tmp_path / "ckpt")
    assert main(["inspect", str(tmp_path / "ckpt"), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["weights"]}
    assert rows["fc"]["bits"] == 4 and rows["fc"]["kind"] == "QLinear"
    assert rows["stem.0"]["bits"] == 32
    assert rows["fc"]["bytes"] < 32 * 10 * 4
    assert (
        main(
            [
                "inspect",
                "digits-cnn",
                "--data",
                "digits",
                "--max-batches",
                "1",
                "--observers",
                "minmax,percentile",
                "--plot",
                str(tmp_path / "h.png"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "activation ranges" in out and "block1.conv1" in out
    assert (tmp_path / "h.png").is_file()


def test_bad_arguments_are_one_line_errors(capsys):
    assert main(["debug", "digits-cnn", "--candidates", "8,four"]) == 2
    assert "not a bit width" in capsys.readouterr().err
    assert main(["inspect", "digits-cnn", "--observers", "nope"]) == 2
    assert "unknown observer" in capsys.readouterr().err
    assert main(["sensitivity"]) == 2  # a usage error: one line, no usage block
    err = capsys.readouterr().err
    assert "required: model" in err and len(err.strip().splitlines()) == 1
