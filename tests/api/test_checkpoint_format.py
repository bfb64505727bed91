"""The checkpoint format on its own: state flattening, atomic writes, validation."""

import json
import warnings
from pathlib import Path

import pytest
import torch

from quantlens import checkpoint
from quantlens.errors import CheckpointError, InputError
from quantlens.files import atomic


def _quantized_state():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_tensor = torch.quantize_per_tensor(torch.rand(3, 4), 0.01, 3, torch.quint8)
        scales = torch.rand(5, dtype=torch.float64) + 0.05
        per_channel = torch.quantize_per_channel(
            torch.randn(5, 2), scales, torch.zeros(5, dtype=torch.long), 0, torch.qint8
        )
    return {
        "w": torch.randn(2, 3),
        "q": per_tensor,
        "packed": (per_channel, None),
        "dtype": torch.qint8,
        "n": 7,
    }


def test_flatten_then_unflatten_gives_the_state_back():
    state = _quantized_state()
    tensors, layout = checkpoint.flatten_state(state)
    assert all(not t.is_quantized for t in tensors.values())
    json.dumps(layout)  # the layout is JSON-ready
    back = checkpoint.unflatten_state(tensors, layout)
    assert torch.equal(back["w"], state["w"])
    assert (
        torch.equal(back["q"].int_repr(), state["q"].int_repr())
        and back["q"].q_scale() == state["q"].q_scale()
    )
    qc, none = back["packed"]
    assert none is None and torch.equal(qc.int_repr(), state["packed"][0].int_repr())
    assert torch.equal(qc.q_per_channel_scales(), state["packed"][0].q_per_channel_scales())
    assert back["dtype"] is torch.qint8 and back["n"] == 7


def test_objects_that_need_pickle_are_refused():
    with pytest.raises(CheckpointError, match="without pickle"):
        checkpoint.flatten_state({"obj": object()})


def _meta():
    return {
        "format": "quantlens",
        "format_version": checkpoint.FORMAT_VERSION,
        "method": "weight_only",
        "config": {"method": "weight_only"},
        "state": {"a": {"kind": "tensor"}},
    }


def test_write_is_atomic_and_replaces_an_old_checkpoint(tmp_path):
    target = tmp_path / "ckpt"
    checkpoint.write(target, {"a": torch.ones(2)}, _meta())
    checkpoint.write(target, {"a": torch.zeros(3)}, _meta())
    tensors, _meta_read = checkpoint.read(target)
    assert tensors["a"].tolist() == [0.0, 0.0, 0.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no staging leftovers


def test_write_refuses_to_clobber_a_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a quantlens checkpoint"):
        checkpoint.write(tmp_path, {"a": torch.ones(1)}, _meta())
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_read_names_the_broken_file(tmp_path):
    target = checkpoint.write(tmp_path / "c", {"a": torch.ones(1000)}, _meta())
    weights = target / checkpoint.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        checkpoint.read(target)
    (target / checkpoint.META_FILE).write_text('{"format": "quantl')
    with pytest.raises(CheckpointError, match="quantlens.json.*not valid JSON"):
        checkpoint.read(target)
    (target / checkpoint.META_FILE).write_text(
        json.dumps({"format": "quantlens", "format_version": 99})
    )
    with pytest.raises(CheckpointError, match="newer"):
        checkpoint.read(target)
    (target / checkpoint.META_FILE).unlink()
    with pytest.raises(CheckpointError, match="quantlens.json is missing"):
        checkpoint.read(target)


def test_factories_outside_quantlens_need_trust(tmp_path):
    source = {"kind": "factory", "path": "collections:OrderedDict"}
    with pytest.raises(CheckpointError, match="trust_code=True"):
        checkpoint.build_skeleton(source)


def _interrupt_weights(monkeypatch):
    """Make the next weights file come out half written, then fail as a full disk would."""
    real = checkpoint.write_tensors

    def half_then_fail(path, tensors, *args, **kwargs):
        real(path, tensors, *args, **kwargs)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_tensors", half_then_fail)


def test_an_interrupted_first_save_leaves_nothing(tmp_path, monkeypatch):
    _interrupt_weights(monkeypatch)
    with pytest.raises(CheckpointError, match="No space left.*unchanged"):
        checkpoint.write(tmp_path / "ckpt", {"a": torch.ones(1000)}, _meta())
    assert list(tmp_path.iterdir()) == []  # no target, no staging folder with half a file


def test_an_interrupted_save_keeps_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    target = checkpoint.write(tmp_path / "ckpt", {"a": torch.arange(1000.0)}, _meta())
    old_files = {p.name: p.read_bytes() for p in target.iterdir()}
    _interrupt_weights(monkeypatch)
    with pytest.raises(CheckpointError):
        checkpoint.write(target, {"a": torch.zeros(5000)}, _meta())
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert {p.name: p.read_bytes() for p in target.iterdir()} == old_files
    tensors, _ = checkpoint.read(target)
    assert torch.equal(tensors["a"], torch.arange(1000.0))


def test_a_failed_rename_puts_the_previous_checkpoint_back(tmp_path, monkeypatch):
    target = checkpoint.write(tmp_path / "ckpt", {"a": torch.arange(10.0)}, _meta())
    old_files = {p.name: p.read_bytes() for p in target.iterdir()}
    real = atomic.os.replace

    def fail_on_the_second_file(src, dst):
        if Path(dst).name == checkpoint.META_FILE:  # the weights have moved in already
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", fail_on_the_second_file)
    with pytest.raises(CheckpointError, match="Input/output"):
        checkpoint.write(target, {"a": torch.zeros(3)}, _meta())
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert {p.name: p.read_bytes() for p in target.iterdir()} == old_files
    assert checkpoint.read(target)[0]["a"].tolist() == list(range(10))


def test_a_meta_tensor_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(CheckpointError, match="'a' is on the meta device"):
        checkpoint.write(tmp_path / "c", {"a": torch.empty(3, device="meta")}, _meta())
    assert list(tmp_path.iterdir()) == []
