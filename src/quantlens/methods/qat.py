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

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from quantlens.core import distributed
from quantlens.core.data import DataSource
from quantlens.core.observers import ObserverName, get_observer
from quantlens.core.progress import track
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


# --- training helper -------------------------------------------------------------------------


def _set_observers(model: nn.Module, enabled: list[bool] | None = None) -> list[bool]:
    fqs = [m for m in model.modules() if isinstance(m, torch_ao.CoreFakeQuantize)]
    before = [bool(m.observer_enabled[0]) for m in fqs]
    for m, on in zip(fqs, enabled if enabled is not None else [False] * len(fqs)):
        m.enable_observer(on)
    return before


def evaluate(model: nn.Module, data, loss_fn=None) -> dict:
    """Mean loss and accuracy of ``model`` on labelled ``data`` (eval mode, ranges untouched).
    Under ``torch.distributed`` each rank evaluates its share of the batches and the sums
    are combined, so every rank returns the figures of all the data."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model = qat_ranks.unwrap(model)
    was_training = model.training
    saved = _set_observers(model)
    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    device = qat_ranks.model_device(model)
    with torch.no_grad(), torch_ao.quiet():
        for batch in qat_ranks.split_round_robin(data):
            if batch.labels is None:
                raise InputError("evaluation data needs labels: give (inputs, labels) batches")
            batch = qat_ranks.on_device(batch.to(torch.float32), device)
            out = batch.run(model)
            loss_sum += float(loss_fn(out, batch.labels)) * batch.size
            correct += int((out.argmax(-1) == batch.labels).sum())
            total += batch.size
    _set_observers(model, saved)
    model.train(was_training)
    loss, right, seen = qat_ranks.reduce_sums(loss_sum, correct, total)
    return {"loss": loss / max(seen, 1), "accuracy": right / max(seen, 1)}


def _one_epoch(net: nn.Module, batches, optimizer, loss_fn, sync: str) -> tuple[float, int, int]:
    """Train one pass over ``batches``; ``(loss sum, correct, samples)`` on this rank."""
    total, correct, loss_sum = 0, 0, 0.0
    device = qat_ranks.model_device(net)
    with torch_ao.quiet():
        for batch in batches:
            if batch.labels is None:
                raise InputError("train_qat needs labels: give (inputs, labels) batches")
            batch = qat_ranks.on_device(batch.to(torch.float32), device)
            out = batch.run(net)
            value = loss_fn(out, batch.labels)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            if sync == "step":
                qat_ranks.sync_qat(net, samples=batch.size)
            loss_sum += float(value.detach()) * batch.size
            labels = batch.labels
            if (
                labels is not None
                and isinstance(out, torch.Tensor)
                and (out.ndim, labels.ndim) == (2, 1)
            ):
                correct += int((out.argmax(-1) == labels).sum())
            total += batch.size
    return loss_sum, correct, total


def train_qat(
    model: nn.Module,
    train_data: DataSource,
    epochs: int = 1,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    eval_data: DataSource | None = None,
    lr: float = 1e-3,
    progress: bool | None = None,
) -> list[dict]:
    """Train a model returned by ``ql.prepare_qat`` with a plain loop.

    Applies the config's ``freeze_bn_after`` / ``freeze_observers_after`` (in epochs).

    Under ``torch.distributed`` (e.g. ``torchrun``) it trains the model inside
    ``DistributedDataParallel`` on this rank's share of ``train_data`` (see
    :func:`~quantlens.methods.qat_ranks.shard`: a ``DistributedSampler`` for a dataset or
    DataLoader, reshuffled each epoch), synchronises BatchNorm statistics and ranges as the
    config's ``sync`` says, reduces the loss and accuracy over the ranks (every rank returns
    the same history) and shows progress on rank 0 only.

    Args:
        model: the prepared (fake-quant) model, or the ``DistributedDataParallel`` around
            it; trained in place.
        train_data: labelled batches in any form ``iter_batches`` accepts, or a map-style
            ``Dataset`` (a DataLoader reshuffles each epoch; a tensor pair is cut into
            batches of 64 in order, split over the ranks); moved batch by batch to the
            device the model is on.
        epochs: passes over ``train_data``.
        optimizer: defaults to SGD(lr, momentum=0.9) over the model's parameters.
        loss: ``loss(outputs, labels)``, default cross-entropy.
        eval_data: labelled data evaluated after every epoch (on the fake-quant model).
        lr: learning rate of the default optimizer.
        progress: show progress bars (default: when stderr is a terminal; rank 0 only).

    Returns:
        One dict per epoch: ``epoch``, ``train_loss``, ``train_accuracy``, ``eval_loss``,
        ``eval_accuracy`` (when ``eval_data``), ``bn_frozen``, ``observers_frozen``.

    Raises:
        DistributedError: another rank failed or stopped answering (after the timeout).

    Example:
        >>> history = ql.train_qat(qat, (x_train, y_train), epochs=2, eval_data=(x_test, y_test))
        >>> history[-1]["eval_accuracy"]
    """
    inner = qat_ranks.unwrap(model)
    ctx = getattr(inner, "quantlens_prepared", None)
    if ctx is None or not any(isinstance(c, QAT) for c in configs_in(ctx.config)):
        raise InputError(
            "train_qat takes a model from ql.prepare_qat(model, ql.QAT(...)); prepare it first"
        )
    cfg = _root(ctx.config)
    loss_fn = loss or nn.CrossEntropyLoss()
    optimizer = optimizer or torch.optim.SGD(inner.parameters(), lr=lr, momentum=0.9)
    with distributed.peer_failures("training"):
        net = qat_ranks.wrap_ddp(model)
        part = qat_ranks.shard(train_data)
        show = progress if distributed.rank() == 0 else False
        history = []
        bn_frozen = observers_frozen = False
        for epoch in range(epochs):
            if (
                cfg.freeze_observers_after is not None
                and epoch >= cfg.freeze_observers_after
                and not observers_frozen
            ):
                torch_ao.freeze_observers(inner)
                observers_frozen = True
            net.train()
            if cfg.freeze_bn_after is not None and epoch >= cfg.freeze_bn_after:
                torch_ao.freeze_bn(inner)
                bn_frozen = True
            batches = track(
                part.epoch(epoch),
                f"QAT epoch {epoch + 1}/{epochs}",
                total=len(part) or None,
                enabled=show,
            )
            sums: tuple[float, float, float] = _one_epoch(
                net, batches, optimizer, loss_fn, cfg.sync
            )
            loss_sum, correct, total = sums
            if cfg.sync == "epoch":
                qat_ranks.sync_qat(inner, samples=total)
            loss_sum, correct, total = qat_ranks.reduce_sums(loss_sum, correct, total)
            row = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / max(total, 1),
                "train_accuracy": correct / max(total, 1),
                "bn_frozen": bn_frozen,
                "observers_frozen": observers_frozen,
            }
            if eval_data is not None:
                metrics = evaluate(inner, eval_data, loss_fn)
                row.update(eval_loss=metrics["loss"], eval_accuracy=metrics["accuracy"])
            history.append(row)
    return history


register_method(
    "qat", QAT, apply=apply, rebuild=rebuild, prepare=prepare, convert=convert, order=10
)
