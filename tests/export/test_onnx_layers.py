"""Weight-only and dynamic layers -> ONNX: each form computes what the quantlens layer
computes (2/4/8 bits, MatMulNBits and DequantizeLinear, Embedding via Gather), the file
holds packed codes, and layers with no ONNX form are refused by name."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_similar, generator, random_tensor
from torch import nn

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import quantlens as ql
from quantlens.errors import InputError
from quantlens.export import load_runner
from quantlens.nn.qlinear import QLinear

pytestmark = pytest.mark.usefixtures("one_thread")


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(100, 64)
        self.fc1 = nn.Linear(64, 96)
        self.fc2 = nn.Linear(96, 32)

    def forward(self, ids):
        return self.fc2(torch.relu(self.fc1(self.emb(ids))))


def _ids(batch: int, seq: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 100, (batch, seq), generator=generator(seed))


def _roundtrip(qm, tmp_path, name="m.onnx", **kwargs):
    path = ql.export(qm, tmp_path / name, format="onnx", example_inputs=(_ids(2, 5),), **kwargs)
    x = _ids(3, 7, seed=1)  # other batch and sequence lengths than the export's
    for layer in qm.modules():  # the exact dequantize-then-multiply (auto paths may round)
        if isinstance(layer, QLinear):
            layer.kernel = "reference"
    with torch.no_grad():
        ref = qm(x)
    return path, ref, load_runner(path)(x)[0]


@pytest.mark.parametrize("bits,group", [(8, None), (4, 32), (4, 16), (2, 16)])
@pytest.mark.parametrize("weight_op", ["auto", "dequantize"])
def test_weight_only_forms_compute_what_the_quantlens_layers_compute(
    bits, group, weight_op, tmp_path
):
    cfg = ql.WeightOnly(bits=bits, group_size=group, modules=("linear", "embedding"))
    qm = ql.quantize(_Net(), cfg)
    path, ref, out = _roundtrip(qm, tmp_path, weight_op=weight_op)
    # ONNX Runtime turns DQ + MatMul into its own MatMulNBits at accuracy level 4 (int8
    # activations), so the dequantize form is only close; the explicit one keeps float32
    atol = 2e-4 if weight_op == "auto" else 2e-2 * ref.abs().max().item()
    assert_similar(out, ref, atol=atol, rtol=1e-4)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ("MatMulNBits" in ops) == (weight_op == "auto")
    assert "Gather" in ops


def test_the_file_holds_packed_codes(tmp_path):
    float_path = ql.export(_Net(), tmp_path / "f.onnx", format="onnx", example_inputs=(_ids(2, 5),))
    qm = ql.quantize(_Net(), ql.WeightOnly(bits=4, group_size=32, modules=("linear", "embedding")))
    path, _, _ = _roundtrip(qm, tmp_path, "w4.onnx")
    ratio = path.stat().st_size / float_path.stat().st_size
    assert ratio < 0.22, (
        ratio
    )  # 4-bit codes + one scale and zero-point per 32 (float: 0.125 + 0.039)
    graph = onnx.load(str(path)).graph
    assert not [
        i
        for i in graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT
        and len(i.dims) == 2
        and i.dims[0] * i.dims[1] >= 64 * 64
    ]


def test_dynamic_linear_keeps_per_token_scales(tmp_path):
    qm = ql.quantize(_Net(), ql.Dynamic())
    path, ref, out = _roundtrip(qm, tmp_path)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("MatMulInteger") == 2 and "ReduceMax" in ops
    assert_similar(out, ref, atol=1e-4, rtol=1e-4)


def test_dynamic_scales_follow_each_token(tmp_path):
    """Scaling one token by 100 changes the other tokens' outputs in a per-tensor graph, not
    here."""
    qm = ql.quantize(nn.Sequential(nn.Linear(16, 8)), ql.Dynamic())
    x = random_tensor(1, 4, 16)
    path = ql.export(qm, tmp_path / "d.onnx", format="onnx", example_inputs=(x,))
    run = load_runner(path)
    loud = x.clone()
    loud[0, 0] *= 100
    torch.testing.assert_close(run(loud)[0][0, 1:], run(x)[0][0, 1:])
    with torch.no_grad():
        assert_similar(run(loud)[0], qm(loud), atol=1e-3, rtol=1e-4)


def test_weight_only_conv_exports(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, stride=2))
    qm = ql.quantize(model, ql.WeightOnly(bits=4, group_size=None, modules=("conv2d",)))
    x = random_tensor(2, 3, 12, 12)
    path = ql.export(qm, tmp_path / "c.onnx", format="onnx", example_inputs=(x,))
    with torch.no_grad():
        assert_similar(load_runner(path)(x)[0], qm(x), atol=1e-4, rtol=1e-4)


def test_a_codebook_layer_is_refused_by_name(tmp_path):
    qm = ql.quantize(_Net(), ql.WeightOnly(bits=4, group_size=32, codebook="nf4"))
    with pytest.raises(InputError, match="'fc1'.*nf4"):
        ql.export(qm, tmp_path / "n.onnx", format="onnx", example_inputs=(_ids(2, 5),))
    assert not list(tmp_path.iterdir())


def test_a_dynamic_lstm_is_refused_by_name(tmp_path):
    from quantlens import zoo

    qm = ql.quantize(zoo.load_model("digits-lstm"), ql.Dynamic(min_rnn_hidden=0))
    with pytest.raises(InputError, match="'rnn'.*no ONNX form"):
        ql.export(
            qm, tmp_path / "l.onnx", format="onnx", example_inputs=zoo.example_inputs("digits-lstm")
        )


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    import sys

    from quantlens.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'quantlens\[onnx\]'"):
        ql.export(
            ql.quantize(_Net(), ql.Dynamic()),
            tmp_path / "m.onnx",
            format="onnx",
            example_inputs=(_ids(1, 2),),
        )
