"""ql.quantize / ql.convert return the train/eval mode they were given, and refuse a model
that is already quantized or prepared."""

import copy
import functools
import warnings

import pytest
import torch
from helpers import generator
from torch import nn

import quantlens as ql
from quantlens.errors import InputError

CALIB = [torch.randn(4, 3, 8, 8, generator=generator(i)) for i in range(2)]
CONFIGS = {
    "weight_only": ql.WeightOnly(bits=8),
    "dynamic": ql.Dynamic(),
    "static": ql.Static(),
    "qat": ql.QAT(),
}


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(8 * 6 * 6, 4),
    )


def _quantize(model, config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dynamic on a CNN warns that only the head is quantized
        return ql.quantize(model, config, calib_data=CALIB)


@pytest.mark.parametrize(
    "method",
    [
        m if m in ("weight_only", "dynamic") else pytest.param(m, marks=pytest.mark.slow)
        for m in CONFIGS
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_every_method_returns_the_mode_it_was_given(method, training):
    model = small_cnn().train(training)
    qm = _quantize(model, CONFIGS[method])
    assert {m.training for m in qm.modules()} == {training}
    assert model.training == training  # the caller's model is untouched
    with torch.no_grad():
        differs = not torch.equal(qm(CALIB[0]), qm(CALIB[0]))
    # float-activation methods keep dropout live in train mode; the int8 graphs (Static, QAT)
    # compute as in eval mode whatever the flag (BatchNorm folded, dropout an identity)
    assert differs == (training and method in ("weight_only", "dynamic"))


def test_a_module_in_its_own_mode_keeps_it():
    model = small_cnn().train()
    model[1].eval()  # BatchNorm frozen inside a training model
    qm = _quantize(model, CONFIGS["weight_only"])
    assert qm.training and not qm[1].training and qm[5].training


def test_convert_returns_the_mode_of_the_prepared_model():
    prepared = ql.prepare_qat(small_cnn(), ql.QAT())
    assert prepared.training  # prepared for training
    prepared(CALIB[0])  # a training step sees data: its ranges are set
    assert ql.convert(prepared).training
    assert not ql.convert(prepared.eval()).training


@functools.cache
def _quantized(method: str) -> nn.Module:
    return _quantize(small_cnn().eval(), CONFIGS[method])


@pytest.mark.parametrize("first", list(CONFIGS))
@pytest.mark.parametrize("second", ["static", "weight_only"])
def test_an_already_quantized_model_is_refused(first, second):
    qm = copy.deepcopy(_quantized(first))
    name = type(CONFIGS[first]).__name__
    with pytest.raises(
        InputError, match=f"already quantized \\(by {name}\\); quantize the float model"
    ):
        _quantize(qm, CONFIGS[second])
    del qm.quantlens_config  # without the record, its quantized modules still say so
    with pytest.raises(InputError, match=r"already quantized \(\d+ quantized module\(s\)"):
        _quantize(qm, CONFIGS[second])


def test_a_prepared_model_is_sent_to_convert_and_a_dequantized_one_quantizes():
    prepared = ql.prepare_qat(small_cnn(), ql.QAT())
    with pytest.raises(InputError, match="finish it with ql.convert"):
        _quantize(prepared, ql.Static())
    w8 = _quantized("weight_only")
    again = ql.quantize(ql.api.dequantize(w8), ql.WeightOnly(bits=4))
    assert [r.name for r in again.quantlens_summary.quantized] == ["5"]


def test_a_float_model_with_quant_stubs_is_not_refused():
    from torch.ao.quantization import DeQuantStub, QuantStub

    model = nn.Sequential(QuantStub(), nn.Linear(8, 8), DeQuantStub())
    assert ql.quantize(model, ql.WeightOnly(bits=8)).quantlens_summary.quantized
