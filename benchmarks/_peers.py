"""Peer libraries' weight-only quantization, built the same way by every benchmark:
torchao int8 (float32) and int4 g128 (on a bfloat16 copy: its CPU kernel takes bfloat16),
optimum-quanto int8 and int4. A peer that is missing or fails is a status line, not an error.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch

Built = dict[str, tuple[torch.nn.Module, float, torch.dtype]]


def timed(build: Callable):
    """``(build(), seconds it took)``."""
    start = time.perf_counter()
    out = build()
    return out, time.perf_counter() - start


def _failure(what: str, exc: Exception) -> str:
    return f"{what}: {type(exc).__name__}: {str(exc)[:200]}"


def _build_each(specs, check: Callable | None) -> tuple[Built, dict[str, str]]:
    """Build every ``(label, build, dtype, note)``; ``check(model)`` (a first call) is part of
    the build, so a peer that cannot run the model is recorded as failed."""
    out: Built = {}
    status: dict[str, str] = {}
    for label, build, dtype, note in specs:
        try:
            model, secs = timed(build)
            if check is not None:
                with torch.no_grad():
                    check(model)
            out[label] = (model, secs, dtype)
            status[label] = "ok" + note
        except Exception as exc:  # noqa: BLE001 - any peer failure is a status line
            status[label] = _failure("failed", exc)
    return out, status


def torchao_weight_only(
    model: torch.nn.Module, int8: str, int4: str, check: Callable | None = None
) -> tuple[Built, dict[str, str]]:
    """torchao int8 weight-only (float32) as ``int8`` and int4 weight-only g128 (bfloat16
    copy) as ``int4``; ``status`` says what ran."""
    try:
        import torchao
        from torchao.prototype.quantization.int4.inference_workflow import (
            PrototypeInt4WeightOnlyConfig,
        )
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except Exception as exc:  # noqa: BLE001 - record any import failure
        return {}, {"torchao": _failure("not available", exc)}

    def build(config, dtype: torch.dtype) -> Callable[[], torch.nn.Module]:
        def make() -> torch.nn.Module:
            m = copy.deepcopy(model).to(dtype)
            quantize_(m, config)
            return m

        return make

    specs = [
        (int8, build(Int8WeightOnlyConfig(), torch.float32), torch.float32, ""),
        (
            int4,
            build(PrototypeInt4WeightOnlyConfig(group_size=128), torch.bfloat16),
            torch.bfloat16,
            " (bfloat16 model)",
        ),
    ]
    out, status = _build_each(specs, check)
    return out, {"torchao": f"installed {torchao.__version__}", **status}


def quanto_weight_only(
    model: torch.nn.Module, int8: str, int4: str, check: Callable | None = None
) -> tuple[Built, dict[str, str]]:
    """optimum-quanto int8 and int4 weights, frozen, as ``int8`` / ``int4``."""
    try:
        import optimum.quanto as oq
    except Exception as exc:  # noqa: BLE001
        return {}, {"optimum-quanto": _failure("not available", exc)}

    def build(qtype) -> Callable[[], torch.nn.Module]:
        def make() -> torch.nn.Module:
            m = copy.deepcopy(model)
            oq.quantize(m, weights=qtype)
            oq.freeze(m)
            return m

        return make

    specs = [
        (int8, build(oq.qint8), torch.float32, ""),
        (int4, build(oq.qint4), torch.float32, ""),
    ]
    out, status = _build_each(specs, check)
    return out, {"optimum-quanto": "installed", **status}
