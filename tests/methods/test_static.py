"""Static int8 on real digits data: accuracy, observers, calibration, skip, float islands,
eager fallback, torch.cat / residual models, backends and mixed-precision input."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from helpers import generator
from int8_helpers import BranchyNet, GatedNet, accuracy, seeded
from torch import nn

import quantlens as ql
from quantlens import zoo
from quantlens.errors import BackendError, ConfigError, InputError, QuantizationFailedError
from quantlens.methods.backends import torch_ao

pytestmark = pytest.mark.usefixtures("one_thread")


def test_digits_cnn_static_int8_loses_at_most_half_a_point(digits_cnn, digits):
    float_acc = accuracy(digits_cnn, digits["test"])
    assert float_acc >= 97.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.ao's deprecation noise never reaches users
        qm = ql.quantize(
            digits_cnn,
            ql.Static(backend="x86", observer="histogram", per_channel=True),
            calib_data=digits["calib"].batches(64),
        )
    assert float_acc - accuracy(qm, digits["test"]) <= 0.5
    summary = qm.quantlens_summary
    assert len(summary.quantized) == 7 and not summary.skipped  # 6 convs + fc, BN/ReLU fused
    assert any("fused" in n and "stem.1" in n for n in summary.notes)
    assert torch.backends.quantized.engine == "x86"
    assert digits_cnn.stem[0].weight.dtype == torch.float32  # the caller's model is untouched


@pytest.mark.parametrize("observer", ["mse", "minmax", "percentile", "moving_average", "meanstd"])
def test_core_observers_drive_calibration(digits_cnn, digits, observer):
    observed = ql.prepare(
        digits_cnn, ql.Static(observer=observer), example_inputs=(digits["calib"].inputs[:1],)
    )
    adapters = [m for m in observed.modules() if isinstance(m, torch_ao.CoreObserver)]
    assert adapters and all(
        type(m.observer).name == observer for m in adapters if m.scheme.granularity == "per_tensor"
    )
    qm = ql.quantize(
        digits_cnn, ql.Static(observer=observer), calib_data=digits["calib"].batches(64)
    )
    assert accuracy(digits_cnn, digits["test"]) - accuracy(qm, digits["test"]) <= 1.0
    scale = qm.stem_0_input_scale_0.item()
    assert 0 < scale < 1.0 / 100  # pixels in [0, 1] on a 7-bit (reduce_range) grid


def test_calibration_stops_after_n_batches(digits_cnn, digits):
    seen = []

    def batches():
        for b in digits["calib"].batches(32):
            seen.append(1)
            yield b

    qm = ql.quantize(
        digits_cnn, ql.Static(observer="minmax", calib_batches=2), calib_data=batches()
    )
    assert len(seen) == 2
    assert any("2 batch" in n for n in qm.quantlens_summary.notes)
    seen.clear()
    ql.quantize(digits_cnn, ql.Static(observer="minmax"), calib_data=batches(), calib_batches=3)
    assert len(seen) == 3


def test_skip_keeps_a_batchnorm_and_the_head_in_float(digits_cnn, digits):
    qm = ql.quantize(
        digits_cnn,
        ql.Static(observer="minmax", skip=["stem.1", "fc"]),
        calib_data=digits["calib"].batches(64),
    )
    bn = qm.get_submodule("stem.1")
    assert isinstance(bn, nn.BatchNorm2d) and not torch_ao.is_quantized_module(bn)
    assert isinstance(qm.fc, nn.Linear) and not torch_ao.is_quantized_module(qm.fc)
    records = {r.name: r for r in qm.quantlens_summary.records}
    assert records["stem.1"].action == "skipped" and records["fc"].action == "skipped"
    assert records["stem.0"].action == "quantized"
    assert accuracy(digits_cnn, digits["test"]) - accuracy(qm, digits["test"]) <= 1.0


def test_resnet18_shaped_quantizes_with_no_edits():
    model = zoo.load_model("resnet18")
    x = torch.randn(2, 3, 64, 64, generator=generator(0))
    qm = ql.quantize(model, ql.Static(observer="minmax", skip=["fc"]), calib_data=x)
    summary = qm.quantlens_summary
    assert len(summary.quantized) == 20  # every conv (incl. 1x1 downsample)
    assert [r.name for r in summary.skipped] == ["fc"] and "skip" in summary.skipped[0].reason
    assert qm.code.count("quantized.add_relu") == 8  # all 8 residual adds run in int8
    out, ref = qm(x), model(x)
    assert torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0) > 0.98


def test_cat_model_quantizes_with_no_edits(digits):
    model = zoo.load_model("cat-cnn")
    qm = ql.quantize(model, ql.Static(observer="minmax"), calib_data=digits["calib"].batches(64))
    assert (
        "torch.cat" in qm.code
        and "dequantize" not in qm.code.split("torch.cat")[0].split("quantize_per_tensor")[-1]
    )
    assert len(qm.quantlens_summary.quantized) == 5 and not qm.quantlens_summary.skipped
    assert accuracy(model, digits["test"]) - accuracy(qm, digits["test"]) <= 1.0


def test_untraceable_custom_module_runs_in_float_between_dequant_and_quant(digits):
    model = seeded(GatedNet)
    qm = ql.quantize(model, ql.Static(observer="minmax"), calib_data=digits["calib"].batches(64))
    records = {r.name: r for r in qm.quantlens_summary.records}
    assert records["conv"].action == "quantized" and records["fc"].action == "quantized"
    assert "cannot be traced" in next(r.reason for r in qm.quantlens_summary.skipped)
    nodes = list(qm.graph.nodes)
    assert sum(n.target == "dequantize" for n in nodes) == 2  # before the island, at the output
    assert sum(n.target is torch.quantize_per_tensor for n in nodes) == 2  # input, after the island
    x = digits["test"].inputs[:64]
    assert (qm(x) - model(x)).abs().max() < 0.1 * model(x).abs().max()


def test_regions_when_the_forward_itself_cannot_be_traced(digits):
    model = seeded(BranchyNet)
    qm = ql.quantize(model, ql.Static(observer="minmax"), calib_data=digits["calib"].batches(64))
    assert any("captured 2 region(s)" in n for n in qm.quantlens_summary.notes)
    assert {r.name for r in qm.quantlens_summary.quantized} == {"conv.module", "fc.module"}
    x = digits["test"].inputs[:64]
    assert (qm(x) - model(x)).abs().max() < 0.05 * model(x).abs().max()
    eager = ql.quantize(
        model, ql.Static(observer="minmax", mode="eager"), calib_data=digits["calib"].batches(64)
    )
    assert {r.name for r in eager.quantlens_summary.quantized} == {"conv.module", "fc.module"}
    assert (eager(x) - model(x)).abs().max() < 0.05 * model(x).abs().max()


class _FunctionalBranchy(nn.Module):
    """Control flow in forward and no Conv/Linear module: no graph, no region."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(10, 64, generator=generator(0)))
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.act(torch.flatten(x, 1))
        if x.sum() > 0:
            x = x + 1
        return torch.nn.functional.linear(x, self.weight)


def test_mode_fx_refuses_a_model_with_neither_graph_nor_region(digits):
    with pytest.raises(QuantizationFailedError, match="cannot capture.*mode='auto'"):
        ql.quantize(
            _FunctionalBranchy(), ql.Static(mode="fx"), calib_data=digits["calib"].batches(64)
        )


@pytest.mark.parametrize("backend", ["qnnpack", "onednn", "fbgemm", "x86"])
def test_backend_switch_sets_the_engine(digits_cnn, digits, backend):
    if backend not in torch_ao.available_engines():
        pytest.skip(f"{backend} not in this build")
    qm = ql.quantize(
        digits_cnn,
        ql.Static(backend=backend, observer="minmax"),
        calib_data=digits["calib"].batches(64),
    )
    assert torch.backends.quantized.engine == backend
    assert accuracy(digits_cnn, digits["test"]) - accuracy(qm, digits["test"]) <= 1.0


def test_missing_engine_lists_the_available_ones(digits_cnn, digits, monkeypatch):
    monkeypatch.setattr(torch_ao.engines, "available_engines", lambda: ["x86", "fbgemm"])
    with pytest.raises(BackendError, match=r"'qnnpack' is not available.*x86, fbgemm"):
        ql.quantize(
            digits_cnn, ql.Static(backend="qnnpack"), calib_data=digits["calib"].batches(64)
        )
    with pytest.raises(ConfigError, match="unknown backend"):
        ql.Static(backend="tpu")


def test_bad_options_are_clear_errors(digits_cnn):
    with pytest.raises(ql.QuantlensError, match="unknown observer"):
        ql.Static(observer="nope")
    with pytest.raises(InputError, match="calib_data"):
        ql.quantize(digits_cnn, ql.Static(), example_inputs=(torch.rand(1, 1, 8, 8),))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_are_accepted(digits_cnn, digits, dtype):
    half = zoo.load_model("digits-cnn").to(dtype)
    calib = [(x.to(dtype), y) for x, y in digits["calib"].batches(64)]
    qm = ql.quantize(half, ql.Static(observer="minmax"), calib_data=calib)
    assert any("cast to float32" in n for n in qm.quantlens_summary.notes)
    assert accuracy(digits_cnn, digits["test"]) - accuracy(qm, digits["test"]) <= 1.0


def test_two_phase_prepare_calibrate_convert(digits_cnn, digits):
    observed = ql.prepare(
        digits_cnn, ql.Static(observer="minmax"), example_inputs=(digits["calib"].inputs[:1],)
    )
    with torch.no_grad():
        for x, _ in digits["calib"].batches(64):
            observed(x)
    qm = ql.convert(observed)
    assert len(qm.quantlens_summary.quantized) == 7
    assert accuracy(digits_cnn, digits["test"]) - accuracy(qm, digits["test"]) <= 1.0


def test_a_bare_layer_as_the_whole_model_is_quantized(tmp_path):
    conv = nn.Conv2d(3, 8, 3).eval()
    x = torch.rand(4, 3, 16, 16, generator=generator(0))
    qm = ql.quantize(conv, ql.Static(observer="minmax"), calib_data=[x])
    assert [r.name for r in qm.quantlens_summary.quantized] == ["module"]
    assert torch_ao.is_quantized_module(qm.module)
    ql.save(qm, tmp_path / "conv")
    assert torch.equal(ql.load(tmp_path / "conv", model=nn.Conv2d(3, 8, 3))(x), qm(x))


def _torch_ao_uses(path) -> list[str]:
    """Imports of torch.ao / torch.quantization / torchao and ``torch.ao`` attribute uses in a
    file."""
    import ast

    upstream = ("torch.ao", "torch.quantization", "torchao")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "torch"
        ):
            names = [f"torch.{node.attr}"]
        found += [
            f"{path.name}:{node.lineno} {n}"
            for n in names
            if n == "torch.ao" or n.startswith(upstream)
        ]
    return found


def test_torch_ao_is_used_only_inside_the_backend_package():
    package = Path(ql.__file__).parent
    backends = package / "methods" / "backends"
    outside = [
        use
        for path in sorted(package.rglob("*.py"))
        if backends not in path.parents
        for use in _torch_ao_uses(path)
    ]
    assert not outside, outside
    assert _torch_ao_uses(backends / "torch_ao" / "engines.py")  # the check does see them
