"""Helpers of the analysis tests: a small MLP, a model with an unused branch, QLinear swapping,
and a minimal module-swapping
weight-only method (per-channel symmetric ``bits``-bit nn.Linear -> QLinear), so these tests
do not depend on the real methods."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

import quantlens as ql
from quantlens.methods import base
from quantlens.nn import QLinear

NAME = "toy_weight_only"


def make_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)
    ).eval()


class SideBranch(nn.Module):
    """A model that computes a branch it never returns (like a pooler under mean pooling)."""

    def __init__(self, in_features: int = 16, out_features: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.main = nn.Linear(in_features, out_features)
        self.side = nn.Linear(in_features, out_features)

    def forward(self, x):
        self.side(x)
        return self.main(x)


def swap_qlinear(
    model: nn.Module, names: dict[str, int], group_size: int | None = None
) -> nn.Module:
    """A copy of ``model`` with the Linear layers in ``names`` replaced by ``bits``-bit QLinear."""
    out = copy.deepcopy(model)
    for name, bits in names.items():
        lin = out.get_submodule(name)
        scheme = (
            ql.QScheme(bits=bits, granularity="per_group", group_size=group_size)
            if group_size
            else ql.QScheme(bits=bits, granularity="per_channel", axis=0)
        )
        out.set_submodule(
            name, QLinear.from_float(lin, ql.quantize_tensor(lin.weight.detach(), scheme))
        )
    return out


@dataclass(frozen=True)
class ToyWeightOnly(base.QuantConfig):
    bits: int = 8


def _apply(model, ctx):
    for name, module in list(model.named_modules()):
        if not name or type(module) is not nn.Linear:
            continue
        cfg = ctx.config_for(name, ToyWeightOnly)
        if cfg is None:
            ctx.summary.add(name, module, "skipped", reason="skipped by a skip pattern")
            continue
        scheme = ql.QScheme(bits=cfg.bits, granularity="per_channel", axis=0)
        q = QLinear.from_float(module, ql.quantize_tensor(module.weight.detach(), scheme))
        model.set_submodule(name, q)
        ctx.summary.add(
            name,
            module,
            "quantized",
            method=NAME,
            bytes_before=base.module_bytes(module),
            bytes_after=q.packed_nbytes + (0 if q.bias is None else q.bias.numel() * 4),
        )
    return model


def register() -> None:
    base.register_method(NAME, ToyWeightOnly, apply=_apply, rebuild=_apply)


def unregister() -> None:
    base._METHODS.pop(NAME, None)
