"""Calibration data and models that would give a silently wrong model are refused in one
line: empty, NaN, wrong shape or dtype, not data at all, meta weights, no calibration."""

import warnings

import pytest
import torch
from helpers import generator
from torch import nn

import quantlens as ql
from quantlens.errors import ConfigError, InputError

X = torch.rand(16, 1, 8, 8, generator=generator(0))


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))


@pytest.mark.parametrize(
    "calib, words",
    [
        (
            torch.empty(0, 1, 8, 8),
            r"calib_data has no samples \(input 0 has shape \(0, 1, 8, 8\)\)",
        ),
        (torch.empty(0, 8), "calib_data has no samples"),
        ([], "calib_data is empty: it yielded no batch"),
        (
            torch.full((4, 1, 8, 8), float("nan")),
            r"calib_data holds 256 NaN/Inf value\(s\); the first is nan at index \(0, 0, 0, 0\)",
        ),
        (torch.rand(4, 8), r"cannot run on calib_data \(inputs \(4, 8\) float32: Expected 3D"),
        (
            torch.randint(0, 3, (4, 1, 8, 8)),
            r"cannot run on calib_data \(inputs \(4, 1, 8, 8\) int64",
        ),
        (5, "cannot read batches from a int \\(calib_data\\)"),
        (torch.tensor(1.0), "calib_data is a 0-d tensor"),
        ("digits", "cannot read batches from a str"),
    ],
)
def test_static_refuses_bad_calib_data(digits_cnn, calib, words):
    with pytest.raises(InputError, match=words):
        ql.quantize(digits_cnn, ql.Static(), calib_data=calib)


def test_calib_batches_negative(digits_cnn):
    with pytest.raises(ConfigError, match="calib_batches must be >= 1"):
        ql.quantize(digits_cnn, ql.Static(calib_batches=-1), calib_data=X)


def test_gptq_nan_calib_data_is_one_line():
    nan = torch.full((8, 64), float("nan"))
    with pytest.raises(InputError, match=r"calib_data holds 512 NaN/Inf"):
        ql.quantize(mlp(), ql.WeightOnly(bits=4, group_size=32, algorithm="gptq"), calib_data=nan)
    with pytest.raises(InputError, match=r"cannot run on calib_data \(inputs \(8, 3\)"):
        ql.quantize(
            mlp(),
            ql.WeightOnly(bits=4, group_size=32, algorithm="gptq"),
            calib_data=torch.rand(8, 3),
        )


@pytest.mark.parametrize(
    "config",
    [ql.WeightOnly(bits=4, group_size=32), ql.Dynamic(), ql.Static()],
    ids=["weight-only", "dynamic", "static"],
)
def test_meta_model_is_one_line(config):
    model = mlp().to("meta")
    with pytest.raises(InputError, match=r"the model's 0.weight is on the meta device"):
        ql.quantize(model, config, calib_data=torch.rand(4, 64))


@pytest.mark.slow
def test_static_convert_without_calibration(digits_cnn):
    prepared = ql.prepare(digits_cnn, ql.Static(), example_inputs=(X[:2],))
    with pytest.raises(InputError, match="saw no calibration data"):
        ql.convert(prepared)
    with torch.no_grad():
        prepared(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", module="torch")
        qm = ql.convert(prepared)
    assert torch.isfinite(qm(X)).all()


def test_qat_convert_without_training(digits_cnn):
    prepared = ql.prepare_qat(digits_cnn, ql.QAT(), example_inputs=(X[:2],))
    with pytest.raises(InputError, match="saw no calibration data"):
        ql.convert(prepared)
