"""The training loop for models from ``ql.prepare_qat``: :func:`train_qat` and :func:`evaluate`.

Both run single-process or under ``torch.distributed`` (see :mod:`quantlens.methods.qat_ranks`).

Example:
    >>> history = ql.train_qat(qat, train_data, epochs=2, eval_data=test)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from quantlens.core import distributed
from quantlens.core.data import DataSource
from quantlens.core.progress import track
from quantlens.errors import InputError
from quantlens.methods import qat_ranks
from quantlens.methods.backends import torch_ao
from quantlens.methods.base import configs_in
from quantlens.methods.qat import QAT, _root


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


__all__ = ["evaluate", "train_qat"]
