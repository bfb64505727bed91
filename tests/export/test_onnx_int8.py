"""Static and QAT int8 -> ONNX QDQ: accuracy in ONNX Runtime within 0.2 points of the
quantlens int8 model, argmax agreement >= 99.5%, the quantlens scales carried over exactly,
and ONNX Runtime fusing the QDQ groups into its int8 kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import numpy_helper

import quantlens as ql
from quantlens import zoo
from quantlens.errors import InputError
from quantlens.export import load_runner

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def static_model(digits_calib):
    model = zoo.load_model("digits-cnn")
    return ql.quantize(model, ql.Static(), calib_data=digits_calib.batches(64))


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item() * 100


def _accuracy_and_agreement(qm, path, digits):
    with torch.no_grad():
        ref = qm(digits.inputs)
    out = load_runner(path)(digits.inputs)[0]
    agree = (ref.argmax(1) == out.argmax(1)).float().mean().item()
    return _accuracy(ref, digits.labels), _accuracy(out, digits.labels), agree


def test_static_digits_cnn_in_onnx_runtime_matches_the_int8_model(
    static_model, digits_test, tmp_path
):
    path = ql.export(static_model, tmp_path / "static.onnx", format="onnx")  # recorded input shapes
    ours, theirs, agree = _accuracy_and_agreement(static_model, path, digits_test)
    assert abs(ours - theirs) <= 0.2 and agree >= 0.995, (ours, theirs, agree)


@pytest.mark.slow
def test_qat_digits_cnn_in_onnx_runtime_matches_the_int8_model(digits_train, digits_test, tmp_path):
    model = zoo.load_model("digits-cnn")
    qat = ql.prepare_qat(model, ql.QAT(), example_inputs=zoo.example_inputs("digits-cnn"))
    ql.train_qat(qat, digits_train.batches(64)[:8], epochs=1)
    qm = ql.convert(qat)
    example = digits_test.inputs[:2]
    path = ql.export(qm, tmp_path / "qat.onnx", format="onnx", example_inputs=example)
    ours, theirs, agree = _accuracy_and_agreement(qm, path, digits_test)
    assert abs(ours - theirs) <= 0.2 and agree >= 0.995, (ours, theirs, agree)


def test_the_graph_carries_the_quantlens_scales_and_int8_weights(static_model, tmp_path):
    path = ql.export(static_model, tmp_path / "static.onnx", format="onnx")
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    first_q = next(n for n in graph.node if n.op_type == "QuantizeLinear")
    assert inits[first_q.input[1]] == np.float32(static_model.stem_0_input_scale_0.item())
    assert inits[first_q.input[2]] == static_model.stem_0_input_zero_point_0.item()
    assert inits[first_q.input[2]].dtype == np.uint8 and inits[first_q.input[1]].ndim == 0
    conv = static_model.get_submodule("block1.conv2")
    weight_dq = [
        n
        for n in graph.node
        if n.op_type == "DequantizeLinear"
        and n.name.startswith("block1.conv2/")
        and inits.get(n.input[0]) is not None
        and inits[n.input[0]].dtype == np.int8
    ]
    assert len(weight_dq) == 1
    dq = weight_dq[0]
    np.testing.assert_array_equal(inits[dq.input[0]], conv.weight().int_repr().numpy())
    np.testing.assert_array_equal(
        inits[dq.input[1]], conv.weight().q_per_channel_scales().float().numpy()
    )
    assert next(a.i for a in dq.attribute if a.name == "axis") == 0
    assert not [
        i for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 4
    ]


def test_onnx_runtime_runs_the_convolutions_and_adds_on_int8_kernels(static_model, tmp_path):
    path = ql.export(static_model, tmp_path / "static.onnx", format="onnx")
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3  # (its note that the optimized file is machine-specific)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") == 6 and ops.count("QLinearAdd") == 2
    assert "Conv" not in ops


def test_batch_axis_is_dynamic(static_model, digits_test, tmp_path):
    path = ql.export(static_model, tmp_path / "static.onnx", format="onnx")
    run = load_runner(path)
    for n in (1, 7):
        assert run(digits_test.inputs[:n])[0].shape == (n, 10)


def test_a_prepared_model_is_refused(tmp_path):
    prepared = ql.prepare(
        zoo.load_model("digits-cnn"), ql.Static(), example_inputs=zoo.example_inputs("digits-cnn")
    )
    with pytest.raises(InputError, match="convert"):
        ql.export(prepared, tmp_path / "p.onnx", format="onnx")
    assert not list(tmp_path.iterdir())


def test_the_eager_fallback_exports_too(digits_calib, digits_test, tmp_path):
    calib = digits_calib.inputs[:64]
    qm = ql.quantize(zoo.load_model("digits-cnn"), ql.Static(mode="eager"), calib_data=calib)
    example = digits_test.inputs[:2]
    path = ql.export(qm, tmp_path / "eager.onnx", format="onnx", example_inputs=example)
    ours, theirs, agree = _accuracy_and_agreement(qm, path, digits_test)
    assert abs(ours - theirs) <= 0.2 and agree >= 0.995, (ours, theirs, agree)
    assert [n.op_type for n in onnx.load(str(path)).graph.node].count(
        "QuantizeLinear"
    ) >= 7  # 7 int8 islands
