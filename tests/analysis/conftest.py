"""Fixtures shared by the analysis tests: the trained digits CNN, small data subsets, and a
weight-only quantized MLP built without any method (so these tests do not depend on one)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import quantlens as ql
from quantlens import zoo
from quantlens.nn import QLinear


@pytest.fixture(scope="session")
def digits_model():
    torch.set_num_threads(2)
    return zoo.load_model("digits-cnn")


@pytest.fixture(scope="session")
def digits_test():
    data = zoo.load_dataset("digits", "test")
    return data.inputs[:192], data.labels[:192]


@pytest.fixture(scope="session")
def digits_calib():
    return zoo.load_dataset("digits", "calib").inputs[:128]


@pytest.fixture(scope="session")
def digits_static(digits_model, digits_calib):
    return ql.quantize(digits_model, ql.Static(observer="minmax"), calib_data=digits_calib)


def make_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)).eval()


def swap_qlinear(model: nn.Module, names: dict[str, int], group_size: int | None = None) -> nn.Module:
    """A copy of ``model`` with the Linear layers in ``names`` replaced by ``bits``-bit QLinear."""
    out = copy.deepcopy(model)
    for name, bits in names.items():
        lin = out.get_submodule(name)
        scheme = (ql.QScheme(bits=bits, granularity="per_group", group_size=group_size) if group_size
                  else ql.QScheme(bits=bits, granularity="per_channel", axis=0))
        out.set_submodule(name, QLinear.from_float(lin, ql.quantize_tensor(lin.weight.detach(), scheme)))
    return out


# --- a minimal module-swapping method, so the analysis tests do not wait on a real one -------

from dataclasses import dataclass  # noqa: E402

from quantlens.methods import base  # noqa: E402


@dataclass(frozen=True)
class ToyWeightOnly(base.QuantConfig):
    """Per-channel symmetric weight-only quantization of nn.Linear to QLinear (test double)."""

    bits: int = 8


def _toy_apply(model, ctx):
    for name, module in list(model.named_modules()):
        cfg = ctx.config_for(name, ToyWeightOnly)
        if not name or type(module) is not nn.Linear:
            continue
        if cfg is None:
            ctx.summary.add(name, module, "skipped", reason="skipped by a skip pattern")
            continue
        scheme = ql.QScheme(bits=cfg.bits, granularity="per_channel", axis=0)
        q = QLinear.from_float(module, ql.quantize_tensor(module.weight.detach(), scheme))
        model.set_submodule(name, q)
        ctx.summary.add(name, module, "quantized", method="toy", bytes_before=base.module_bytes(module),
                        bytes_after=q.packed_nbytes + (0 if q.bias is None else q.bias.numel() * 4))
    return model


@pytest.fixture(scope="session")
def toy_method():
    base.register_method("toy_weight_only", ToyWeightOnly, apply=_toy_apply, rebuild=_toy_apply)
    yield ToyWeightOnly
    base._METHODS.pop("toy_weight_only", None)
