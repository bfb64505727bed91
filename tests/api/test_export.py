"""ql.export(model, path, format="torchscript"): Dynamic models (LSTM, GRU, DynamicLinear
on every kernel path) traced or scripted, loaded back with torch.jit.load, equal outputs;
no upstream deprecation noise; hints that match what was passed.
(Static/QAT export: tests/methods/test_static_io.py.)"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import quantlens as ql
from quantlens import zoo
from quantlens.errors import InputError, UnknownNameError
from quantlens.nn.dynamic_linear import DynamicLinear, dynamic_kernels
from quantlens.nn.dynamic_rnn import DynamicRNN

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits_seq():
    return zoo.load_dataset("digits-seq", "test")


def _export_silently(model, path, **kwargs):
    """ql.export, failing the test on any warning it lets through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ql.export(model, path, **kwargs)
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]
    return out


def _accuracy(out: torch.Tensor, labels: torch.Tensor) -> float:
    return (out.argmax(1) == labels).float().mean().item()


@pytest.mark.parametrize("head_kernel", ["auto", "fbgemm"])
def test_dynamic_lstm_model_traces_and_loads_with_equal_outputs(head_kernel, digits_seq, tmp_path):
    model = zoo.load_model("digits-lstm")
    qm = ql.quantize(
        model, ql.Dynamic(min_rnn_hidden=0, min_linear_out=0)
    )  # the LSTM and the Linear head
    assert isinstance(qm.rnn, DynamicRNN) and isinstance(qm.fc, DynamicLinear)
    qm.fc.kernel = head_kernel
    path = _export_silently(
        qm, tmp_path / "lstm.pt", example_inputs=zoo.example_inputs("digits-lstm")
    )
    loaded = torch.jit.load(str(path))
    x = digits_seq.inputs  # 450 sequences: another batch size than the 2 it was traced with
    with torch.no_grad():
        expected = qm(x)
    assert torch.equal(loaded(x), expected)
    assert _accuracy(expected, digits_seq.labels) >= 0.97
    assert isinstance(qm.rnn, DynamicRNN)  # the caller's model keeps its own layers
    assert not any(
        n.startswith(".") for n in (p.name for p in tmp_path.iterdir())
    )  # no temp file left


@pytest.mark.parametrize("name", ["digits-lstm", "digits-gru"])
def test_dynamic_rnn_alone_is_scripted_without_example_inputs(name, digits_seq, tmp_path):
    qm = ql.quantize(
        zoo.load_model(name), ql.Dynamic(modules=(name.split("-")[1],), min_rnn_hidden=0)
    )
    assert isinstance(qm.rnn, DynamicRNN) and isinstance(qm.fc, nn.Linear)
    loaded = torch.jit.load(str(_export_silently(qm, tmp_path / "rnn.pt")))
    assert isinstance(loaded, torch.jit.RecursiveScriptModule)
    with torch.no_grad():
        assert torch.equal(loaded(digits_seq.inputs), qm(digits_seq.inputs))


def _mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)).eval()


_PATHS = [(k.dtype, name) for name, k in dynamic_kernels().items()]


@pytest.mark.parametrize("dtype,kernel", [("int8", "auto"), ("float16", "auto"), *_PATHS])
def test_dynamic_linear_mlp_traces_on_every_kernel_path(dtype, kernel, digits_test, tmp_path):
    digits = digits_test.inputs.flatten(1)  # (450, 64)
    qm = ql.quantize(_mlp(), ql.Dynamic(dtype=dtype))
    layers = [m for m in qm.modules() if isinstance(m, DynamicLinear)]
    assert len(layers) == 2
    for layer in layers:
        layer.kernel = kernel
        reason = dynamic_kernels()[kernel].accepts(layer, digits) if kernel != "auto" else None
        if reason is not None:
            pytest.skip(f"kernel path {kernel!r} does not run here: {reason}")
    path = _export_silently(
        qm, tmp_path / "mlp.pt", example_inputs=digits[:3]
    )  # a bare tensor is accepted
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        assert torch.equal(loaded(digits), qm(digits))


def test_hints_name_example_inputs_only_when_they_were_not_given(digits_seq, tmp_path):
    qm = ql.quantize(_mlp(), ql.Dynamic())
    with pytest.raises(InputError, match=r"could not script.*pass example_inputs="):
        ql.export(qm, tmp_path / "a.pt")
    lstm = ql.quantize(zoo.load_model("digits-lstm"), ql.Dynamic(min_rnn_hidden=0))
    with pytest.raises(InputError, match=r"could not trace.*positional inputs") as wrong:
        ql.export(
            lstm, tmp_path / "b.pt", example_inputs=(digits_seq.inputs[0],)
        )  # (8, 8): no batch dim
    assert "pass example_inputs" not in str(wrong.value)
    with pytest.raises(UnknownNameError, match="supported: onnx, pt2, torchscript"):
        ql.export(lstm, tmp_path / "c.tflite", format="tflite")
    assert not list(tmp_path.iterdir())  # nothing written on failure
