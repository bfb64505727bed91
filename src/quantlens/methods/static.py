"""Static post-training int8 quantization with calibration, on PyTorch's native kernels.

Flow: capture the model's graph (torch.fx), fuse Conv/Linear+BN(+ReLU), insert observers
(quantlens' own range estimators), run calibration batches, convert to int8 kernels of the
chosen engine. Quant/DeQuant boundaries go in automatically, including around float-only
islands (skipped layers, layers another method quantizes, modules torch.fx cannot trace),
and residual adds and ``torch.cat`` are quantized without editing the model.

If torch.fx cannot capture the model's own ``forward`` (data-dependent Python control flow
at the top level), Static falls back to eager mode layer by layer: BatchNorms are folded
(:mod:`quantlens.methods.fusion`) and each Conv/Linear runs as an int8 island between its
own Quant and DeQuant; everything between them stays float. That is slower than graph mode
and the summary says so; ``mode="fx"`` turns the fallback into an error instead.

Example:
    >>> qm = ql.quantize(model, ql.Static(backend="x86", observer="mse"), calib_data=calib)
    >>> print(qm.quantlens_summary)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quantlens.core.observers import get_observer
from quantlens.errors import ConfigError, QuantizationFailedError
from quantlens.methods import fusion, int8_check, int8_graph
from quantlens.methods.backends import torch_ao
from quantlens.methods.base import (
    SKIP_REASON,
    QuantConfig,
    QuantContext,
    configs_in,
    register_method,
    resolve,
)

MODES = ("auto", "fx", "eager")


@dataclass(frozen=True)
class Static(QuantConfig):
    """Static int8: weights and activations int8, activation ranges from calibration data.

    Args:
        backend: quantized engine: ``"x86"``, ``"fbgemm"``, ``"onednn"`` or ``"qnnpack"``.
        observer: activation range estimator from ``quantlens.core.observers``:
            ``"histogram"`` (= ``"mse"``), ``"minmax"``, ``"moving_average"``,
            ``"percentile"``, ``"entropy"``, ``"meanstd"``.
        weight_observer: weight range estimator (per output channel with ``per_channel``).
        per_channel: one weight scale per output channel (else one per tensor).
        fuse: fold BatchNorm and fuse ReLU into the preceding Conv/Linear. Graph mode always
            folds Conv+BN (PyTorch has no int8 Conv->BN pair); ``fuse=False`` keeps the
            BatchNorms of the eager fallback as separate layers.
        calib_batches: stop calibration after this many batches (None: all).
        mode: ``"auto"`` (graph mode, eager fallback), ``"fx"`` or ``"eager"``.
        skip, overrides: see :class:`QuantConfig`; skipped layers stay float.
    """

    backend: str = "x86"
    observer: str = "histogram"
    weight_observer: str = "minmax"
    per_channel: bool = True
    fuse: bool = True
    calib_batches: int | None = None
    mode: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend not in torch_ao.BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of: {', '.join(torch_ao.BACKENDS)}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.calib_batches is not None and self.calib_batches < 1:
            raise ConfigError(f"calib_batches must be >= 1 or None, got {self.calib_batches}")
        for name in (self.observer, self.weight_observer):
            get_observer(name)  # raises UnknownNameError listing the valid names


def _qconfig(cfg: Static):
    return torch_ao.make_qconfig(
        cfg.backend, observer=cfg.observer, weight_observer=cfg.weight_observer, per_channel=cfg.per_channel
    )


def _root(ctx: QuantContext) -> Static:
    root = resolve(ctx.config, "")
    if isinstance(root, Static):
        return root
    return next(c for c in configs_in(ctx.config) if isinstance(c, Static))


def _detail(cfg: Static) -> str:
    weights = "per-channel" if cfg.per_channel else "per-tensor"
    return f"int8 {cfg.backend}, {weights} weights, {cfg.observer} activations"


def prepare(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """Capture the graph, fuse and insert observers (graph mode), or the eager fallback."""
    cfg = _root(ctx)
    torch_ao.use_engine(cfg.backend)
    model = int8_graph.wrap_leaf_root(model).eval()
    example = int8_graph.example_inputs(ctx)
    desc = int8_graph.describe_inputs(example)
    before = int8_graph.float_layers(model)
    ctx.extra.update(int8_method="static", float_layers=before, example_desc=desc, example=example)
    syncs = fusion.plain_batchnorms(model, example)
    if syncs:
        ctx.summary.note(f"{len(syncs)} SyncBatchNorm layer(s) fused and folded as BatchNorm (the same function in eval mode)")
    if cfg.mode != "eager":
        plan = int8_graph.make_plan(model, ctx.config, Static)
        try:
            prepared = int8_graph.capture(model, plan, plan.mapping(_qconfig, qat=False), example, qat=False)
        except QuantizationFailedError as exc:
            if cfg.mode == "fx":
                raise QuantizationFailedError(f"{exc}; use mode='auto' for the eager fallback") from exc
            ctx.summary.note(f"graph capture failed ({str(exc)[:160]}); used the layer-wise eager fallback")
            return _eager_prepare(model, ctx, cfg)
        ctx.extra["plan"] = plan
        int8_graph.preserve(prepared, quantlens_example_inputs=desc)
        return prepared
    return _eager_prepare(model, ctx, cfg)


def convert(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """Turn an observed (calibrated) model into int8 kernels and record the summary."""
    cfg = _root(ctx)
    torch_ao.use_engine(cfg.backend)
    int8_graph.require_calibrated(model)
    plan = ctx.extra.get("plan")
    int8_graph.to_kernel_host(model, ctx.summary)
    if plan is None:  # eager fallback
        converted = torch_ao.eager_convert(model)
        plan = int8_graph.Plan(cfg.backend, cfg, reasons=ctx.extra.get("eager_reasons", {}))
    else:
        converted = torch_ao.convert(model, backend=cfg.backend, custom_modules=int8_graph.custom_modules())
    int8_check.check_converted(converted, ctx)
    int8_graph.summarize(ctx, ctx.extra["float_layers"], converted, plan, _detail(cfg))
    int8_graph.preserve(converted, quantlens_example_inputs=ctx.extra["example_desc"])
    return converted


def apply(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """Prepare, calibrate over ``ctx.calib_data`` (with a progress bar), convert."""
    cfg = _root(ctx)
    prepared = prepare(model, ctx)
    n = int8_graph.calibrate(prepared, ctx, cfg.calib_batches or ctx.calib_batches)
    ctx.summary.note(f"calibrated on {n} batch(es) with the {cfg.observer} observer")
    return convert(prepared, ctx)


def rebuild(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """The int8 structure of a float skeleton, from the recorded example input shapes (the
    observers see one random batch; the checkpoint's tensors replace every value)."""
    prepared = prepare(model, ctx)
    with torch.no_grad(), torch_ao.quiet():
        prepared(*int8_graph.make_inputs(ctx.extra["example_desc"]))
    return convert(prepared, ctx)


# --- eager fallback --------------------------------------------------------------------------


def _eager_prepare(model: nn.Module, ctx: QuantContext, cfg: Static) -> nn.Module:
    def floated(name: str) -> bool:
        return not isinstance(resolve(ctx.config, name), Static)

    reasons = {}
    if cfg.fuse:
        folded = fusion.fold_batchnorms(model, keep=floated)
        if folded:
            ctx.summary.note("folded BatchNorm into the layer before it: " + ", ".join(b for _, b in folded))
    targets = []
    for name, module in model.named_modules():
        if not name or list(module.children()):
            continue
        if floated(name):
            if resolve(ctx.config, name) is None:
                reasons[name] = SKIP_REASON
        elif isinstance(module, torch_ao.EAGER_TYPES):
            targets.append(name)
    ctx.extra["float_layers"] = int8_graph.float_layers(model)
    for name, (_, nbytes) in ctx.extra["float_layers"].items():
        if nbytes and name not in targets and name not in reasons:
            module = model.get_submodule(name)
            reasons[name] = (fusion.norm_reason(module) if isinstance(module, fusion.PER_SAMPLE_NORMS)
                             else "eager fallback quantizes Conv/Linear layers only")
    ctx.extra["eager_reasons"] = reasons
    torch_ao.eager_wrap(model, targets)
    prepared = torch_ao.eager_prepare(model, _qconfig(cfg), targets)
    ctx.extra["float_layers"] = {
        (f"{n}.module" if n in targets else n): v for n, v in ctx.extra["float_layers"].items()
    }
    return prepared


register_method("static", Static, apply=apply, rebuild=rebuild, prepare=prepare, convert=convert, order=10)

__all__ = ["Static", "register_custom_module"]
register_custom_module = int8_graph.register_custom_module
