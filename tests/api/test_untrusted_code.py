"""No entry point that can read a checkpoint runs the code its quantlens.json names unless
the caller said ``trust_code``: each one gets a checkpoint whose source is
``os:system("touch MARKER")`` and the marker must not appear."""

import json

import pytest
import torch
from torch import nn

import quantlens as ql
from quantlens.cli import main
from quantlens.errors import CheckpointError, QuantizationFailedError
from quantlens.methods.weight_only import WeightOnly


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16)).eval()


@pytest.fixture
def evil(tmp_path):
    """``(checkpoint, marker)``: a whole checkpoint whose source runs ``touch marker``."""
    marker = tmp_path / "MARKER"
    ckpt = ql.save(ql.quantize(_mlp(), WeightOnly(bits=4, group_size=32)), tmp_path / "evil")
    meta = json.loads((ckpt / "quantlens.json").read_text())
    meta["source"] = {
        "kind": "factory",
        "path": "os:system",
        "kwargs": {"command": f"touch {marker}"},
    }
    (ckpt / "quantlens.json").write_text(json.dumps(meta))
    return ckpt, marker


def test_load_refuses_and_runs_nothing(evil):
    ckpt, marker = evil
    with pytest.raises(CheckpointError, match="os:system.*trust_code=True"):
        ql.load(ckpt)
    assert not marker.exists()


def test_a_model_loaded_with_a_skeleton_does_not_carry_the_factory(evil, tmp_path):
    ckpt, marker = evil
    qm = ql.load(ckpt, model=_mlp())
    assert getattr(qm, "quantlens_source", None) is None
    again = ql.save(qm, tmp_path / "again")
    assert json.loads((again / "quantlens.json").read_text())["source"] is None
    with pytest.raises(CheckpointError, match="does not record how to rebuild"):
        ql.load(again, trust_code=True)  # even trusted, nothing names os:system any more
    assert not marker.exists()


def test_inspecting_the_files_runs_nothing(evil):
    from quantlens.analysis.stored_weights import inspect_checkpoint

    ckpt, marker = evil
    rows = inspect_checkpoint(ckpt)
    assert [(r.name, r.kind, r.bits) for r in rows] == [("0", "QLinear", 4), ("2", "QLinear", 4)]
    assert not marker.exists()


@pytest.mark.parametrize(
    "command, code, says",
    [
        (["info", "{ckpt}"], 0, "factory os:system"),
        (["info", "{ckpt}", "--verify"], 0, "verified"),
        (["inspect", "{ckpt}"], 0, "2 layers"),
        (["inspect", "{ckpt}", "--data", "{data}"], 2, "trust_code"),
        (["quantize", "{ckpt}", "--bits", "8", "-o", "{out}"], 2, "trust_code"),
        (["compare", "{ckpt}", "--data", "{data}", "--out", "{out}"], 2, "trust_code"),
        (["sensitivity", "{ckpt}", "--data", "{data}", "--method", "w8"], 2, "trust_code"),
        (["debug", "{ckpt}", "--data", "{data}", "--method", "w8"], 2, "trust_code"),
    ],
)
def test_every_command_runs_nothing_without_trust_code(evil, tmp_path, capsys, command, code, says):
    ckpt, marker = evil
    data = tmp_path / "x.pt"
    torch.save(torch.randn(8, 64), data)
    argv = [a.format(ckpt=ckpt, data=data, out=tmp_path / "out") for a in command]
    assert main(argv) == code
    captured = capsys.readouterr()
    assert says in captured.out + captured.err
    if code:
        assert len(captured.err.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.mark.slow  # starts the memory-measuring process (imports torch): ~4 s
def test_memory_measurement_runs_nothing_without_trust_code(evil, tmp_path):
    from quantlens.eval.memory import ModelRef, measure_peak_memory

    ckpt, marker = evil
    x = torch.randn(4, 64)
    with pytest.raises(QuantizationFailedError, match="trust_code"):
        measure_peak_memory(ModelRef.checkpoint(ckpt), x)
    float_dir = tmp_path / "float"
    float_dir.mkdir()
    from safetensors.torch import save_file

    save_file(_mlp().state_dict(), str(float_dir / "model.safetensors"))
    source = json.loads((ckpt / "quantlens.json").read_text())["source"]
    (float_dir / "source.json").write_text(json.dumps(source))
    with pytest.raises(QuantizationFailedError, match="trust_code"):
        measure_peak_memory(ModelRef.float_dir(float_dir), x)
    # compare measures the memory of a model loaded with a skeleton: it carries no factory
    report = ql.compare(
        _mlp(),
        {"ckpt": ql.load(ckpt, model=_mlp())},
        data=x,
        reps=2,
        warmup=1,
        layer_errors=False,
        progress=False,
    )
    row = report.rows[-1]
    assert row.ok and row.peak_memory_bytes is None
    assert any(
        "peak memory not measured" in n and "does not record how to rebuild" in n for n in row.notes
    )
    assert not marker.exists()
