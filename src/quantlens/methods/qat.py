"""Quantization-aware training: fake quantization in training, int8 kernels after convert.

``ql.prepare_qat(model, ql.QAT())`` captures the graph (torch.fx), fuses Conv+BN(+ReLU)
into QAT modules that keep training their BatchNorm, and inserts fake quantization on
activations (uint8, moving-average range) and weights (signed, per output channel, range of
the current weights). The result trains with a normal PyTorch loop or :func:`train_qat`;
``ql.convert(model)`` gives the int8 model.

Lower-bit weights: ``ql.QAT(bits=4)`` trains weights on a 16-level grid with quantlens'
``fake_quantize`` (straight-through estimator). The converted model runs PyTorch's int8
kernels: storage is int8, but every weight takes one of 16 values (``-8..7`` times its
channel's scale) -- 4-bit accuracy, not 4-bit size. Activations are always 8-bit: the int8
kernels have no narrower activation type.

Example:
    >>> qat = ql.prepare_qat(model, ql.QAT(backend="x86"))
    >>> history = ql.train_qat(qat, train_data, epochs=2, eval_data=test)
    >>> qm = ql.convert(qat)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quantlens.core import distributed
from quantlens.core.observers import ObserverName, get_observer
from quantlens.errors import ConfigError, InputError, QuantizationFailedError
from quantlens.methods import (
    fusion,
    int8_check,
    int8_graph,
    int8_inputs,
    int8_regions,
    qat_ranks,
)
from quantlens.methods.backends import torch_ao
from quantlens.methods.backends.torch_ao import Backend
from quantlens.methods.base import QuantConfig, QuantContext, configs_in, register_method, resolve
from quantlens.methods.int8_state import int8_state


@dataclass(frozen=True)
class QAT(QuantConfig):
    """Quantization-aware training to int8 kernels.

    Args:
        backend: quantized engine: ``"x86"``, ``"fbgemm"``, ``"onednn"`` or ``"qnnpack"``.
        bits: weight bit width, 2..8 (activations are always uint8).
        weight_bits: overrides ``bits`` for weights when given.
        observer: activation range estimator while training (``"moving_average"`` is
            PyTorch's default; any quantlens observer name works).
        per_channel: one weight scale per output channel.
        freeze_bn_after: epochs after which :func:`train_qat` freezes BatchNorm statistics.
        freeze_observers_after: epochs after which activation ranges are frozen.
        sync: under ``torch.distributed`` (``torchrun``), when every rank's BatchNorm
            running statistics and fake-quantize ranges are made identical (what
            ``DistributedDataParallel`` does not synchronise): ``"epoch"`` (at the end of
            each :func:`train_qat` epoch), ``"step"`` (after every optimizer step) or
            ``"off"`` (never: ranks may convert to different models). Unless ``"off"``,
            ``ql.convert`` synchronises too, so every rank converts to the same int8
            model. Outside a process group nothing is synchronised.
        skip, overrides: see :class:`QuantConfig`.
    """

    backend: Backend = "x86"
    bits: int = 8
    weight_bits: int | None = None
    observer: ObserverName = "moving_average"
    per_channel: bool = True
    freeze_bn_after: int | None = None
    freeze_observers_after: int | None = None
    sync: str = "epoch"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend not in torch_ao.BACKENDS:
            raise ConfigError(
                f"unknown backend {self.backend!r}; choose one of: {', '.join(torch_ao.BACKENDS)}"
            )
        if not 2 <= self.wbits <= 8:
            raise ConfigError(f"weight bits must be 2..8 for int8 kernels, got {self.wbits}")
        get_observer(self.observer)
        if self.sync not in qat_ranks.SYNC_MODES:
            raise ConfigError(
                f"unknown sync {self.sync!r}; choose one of: {', '.join(qat_ranks.SYNC_MODES)}"
            )

    @property
    def wbits(self) -> int:
        return self.weight_bits if self.weight_bits is not None else self.bits


def _qconfig(cfg: QAT):
    return torch_ao.make_qconfig(
        cfg.backend,
        observer=cfg.observer,
        per_channel=cfg.per_channel,
        weight_bits=cfg.wbits,
        qat=True,
    )


def _root(config: QuantConfig) -> QAT:
    root = resolve(config, "")
    return (
        root if isinstance(root, QAT) else next(c for c in configs_in(config) if isinstance(c, QAT))
    )


def _detail(cfg: QAT) -> str:
    weights = f"{cfg.wbits}-bit weights" + (
        " (stored int8, 2^bits levels)" if cfg.wbits < 8 else ""
    )
    return f"int8 {cfg.backend} (QAT), {weights}, uint8 activations"


def prepare(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """Insert fake quantization (weights and activations) and fuse Conv+BN(+ReLU) for training."""
    cfg = _root(ctx.config)
    torch_ao.use_engine(cfg.backend)
    model = int8_graph.wrap_leaf_root(model)
    batch = int8_inputs.example_batch(ctx, required=False)
    desc = int8_inputs.describe_inputs(batch.args, batch.kwargs) if batch is not None else None
    positional = batch.args if batch is not None and not batch.kwargs else None
    state = int8_state(ctx)
    state.method, state.float_layers = "qat", int8_graph.float_layers(model)
    state.example_desc = desc
    state.example = batch if batch is not None and batch.kwargs else positional
    syncs = fusion.plain_batchnorms(model, positional)
    plan = int8_graph.make_plan(model, ctx.config, QAT)
    model.train()
    if batch is not None and int8_regions.has_integer_inputs(batch):
        int8_regions.layers_only(model, plan)
    example = int8_inputs.keyword_root(model, batch) if batch is not None else ()
    try:
        keep = (
            None
            if batch is None
            else (
                lambda bad: not int8_regions.regions_cover_more(model, batch, ctx.config, QAT, bad)
            )
        )
        prepared: nn.Module = int8_graph.capture(
            model, plan, plan.mapping(_qconfig, qat=True), example, qat=True, keep_islands=keep
        )
    except QuantizationFailedError as exc:
        int8_inputs.plain_root(model)
        if batch is None:
            raise QuantizationFailedError(
                f"{exc}; pass example_inputs=... so QAT can capture its traceable regions"
            ) from exc
        regions = int8_regions.capture_regions(model, batch, ctx.config, QAT, _qconfig, qat=True)
        if not regions:
            raise
        state.regions = regions
        ctx.summary.note(int8_regions.regions_note(regions, exc))
        prepared = model.train()
    else:
        state.plan = plan
        if batch is not None:
            state.example = example  # positional, in the graph's input order
    if syncs:
        back = fusion.sync_batchnorms_back(prepared, syncs)
        ctx.summary.note(
            f"{len(syncs)} SyncBatchNorm layer(s) fused like BatchNorm; they synchronise while "
            f"training (on CPU too: {', '.join(back)}) and fold at convert"
        )
    if desc is None:  # ql.prepare_qat(model, config) without inputs: learn the shapes in training
        int8_graph.record_inputs_on_first_call(prepared, ctx)
    else:
        int8_graph.preserve(prepared, quantlens_example_inputs=desc)
    if cfg.wbits < 8:
        ctx.summary.note(
            f"weights train on {1 << cfg.wbits} levels ({cfg.wbits}-bit); the int8 kernels store "
            "them in int8"
        )
    return prepared


def convert(model: nn.Module, ctx: QuantContext, *, sync: bool = True) -> nn.Module:
    """The trained fake-quant model as int8 kernels; under ``torch.distributed`` (unless
    ``sync=False`` or the config's ``sync="off"``), every rank's BatchNorm statistics and
    ranges are made identical first (:func:`~quantlens.methods.qat_ranks.sync_qat`)."""
    cfg = _root(ctx.config)
    torch_ao.use_engine(cfg.backend)
    if sync and cfg.sync != "off" and qat_ranks.sync_qat(model):
        ctx.summary.note(
            f"BatchNorm statistics and ranges synchronised over {distributed.world_size()} ranks"
        )
    state = int8_state(ctx)
    desc = state.example_desc or getattr(model, "quantlens_example_inputs", None)
    int8_graph.to_kernel_host(model, ctx.summary)
    fusion.unsync_batchnorms(model)
    int8_graph.require_calibrated(model)
    regions, before = state.regions, state.float_layers
    if regions:
        plan = int8_regions.convert_regions(
            model.eval(), regions, ctx.config, QAT, int8_graph.custom_modules()
        )
        before, converted = int8_regions.rename_layers(before, regions), model
    else:
        if state.plan is None:
            raise InputError("this model has no QAT graph plan; prepare it with ql.prepare_qat")
        plan = state.plan
        converted = torch_ao.convert(
            model, backend=cfg.backend, custom_modules=int8_graph.custom_modules()
        )
    int8_graph.preserve(converted, quantlens_example_inputs=desc)
    int8_check.check_converted(converted, ctx)
    int8_graph.summarize(ctx, before, converted, plan, _detail(cfg))
    return converted


def apply(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """One shot without training: prepare, set ranges on ``calib_data`` (eval mode), convert.
    To train, use ``ql.prepare_qat`` + :func:`train_qat` + ``ql.convert``."""
    prepared = prepare(model, ctx)
    int8_graph.calibrate(prepared, ctx, ctx.calib_batches)
    return convert(prepared, ctx)


def rebuild(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """The int8 structure of a float skeleton (for loading a checkpoint)."""
    prepared = prepare(model, ctx)
    prepared.eval()
    with torch.no_grad(), torch_ao.quiet():
        int8_inputs.make_batch(int8_state(ctx).example_desc).run(prepared)
    return convert(prepared, ctx, sync=False)  # loading: one process, nothing to merge


register_method(
    "qat", QAT, apply=apply, rebuild=rebuild, prepare=prepare, convert=convert, order=10
)

# Re-exported: the training loop lives in its own module (it imports QAT from here).
from quantlens.methods.qat_train import evaluate, train_qat

__all__ = ["QAT", "evaluate", "train_qat"]
