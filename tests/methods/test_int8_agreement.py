"""After converting, Static compares the int8 model's output with the float model's on the
example batch and warns, in the summary too, when they disagree."""

import warnings

import pytest
import torch
from helpers import generator
from torch import nn

import quantlens as ql
from quantlens.methods import int8_check

pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()


def _quantize(model, calib):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qm = ql.quantize(model, ql.Static(observer="minmax"), calib_data=calib)
    return qm, [str(w.message) for w in caught if "agrees with float" in str(w.message)]


def test_a_well_calibrated_model_converts_without_the_warning():
    calib = [torch.randn(8, 16, generator=generator(i)) for i in range(4)]
    qm, warned = _quantize(_mlp(), calib)
    assert not warned and not any("agrees with float" in n for n in qm.quantlens_summary.notes)


def test_an_int8_model_far_from_float_is_said_to_be():
    model = _mlp()
    with torch.no_grad():  # input 0 is huge and unused: one int8 scale over it rounds the rest to 0
        model[0].weight[:, 0] = 0
        model[0].bias.zero_()
    calib = [torch.randn(8, 16, generator=generator(i)) for i in range(4)]
    for batch in calib:
        batch[:, 0] = 1e4
    with torch.no_grad():
        reference = model(calib[0])
    qm, warned = _quantize(model, calib)
    with torch.no_grad():
        cosine = float(
            torch.nn.functional.cosine_similarity(
                reference.flatten(), qm(calib[0]).flatten(), dim=0
            )
        )
    assert cosine < int8_check.AGREEMENT_FLOOR
    assert len(warned) == 1 and "skip=[...]" in warned[0]
    assert any("agrees with float" in n for n in qm.quantlens_summary.notes)


def test_output_of_finds_the_first_tensor_of_dicts_and_tuples():
    class Out(nn.Module):
        def forward(self, x):
            return {"loss": None, "logits": (x * 2, x)}

    x = torch.ones(2, 3)
    assert torch.equal(int8_check.output_of(Out(), (x,)), x * 2)
    assert int8_check.output_of(nn.Linear(4, 4), (x,)) is None  # does not run: no reference
