"""A minimal module-swapping weight-only method, so the analysis tests do not depend on the
real methods: per-channel symmetric ``bits``-bit nn.Linear -> QLinear."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

import quantlens as ql
from quantlens.methods import base
from quantlens.nn import QLinear

NAME = "toy_weight_only"


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
        ctx.summary.add(name, module, "quantized", method=NAME, bytes_before=base.module_bytes(module),
                        bytes_after=q.packed_nbytes + (0 if q.bias is None else q.bias.numel() * 4))
    return model


def register() -> None:
    base.register_method(NAME, ToyWeightOnly, apply=_apply, rebuild=_apply)


def unregister() -> None:
    base._METHODS.pop(NAME, None)
