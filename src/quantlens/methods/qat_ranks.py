"""QAT over the ranks of ``torch.distributed``: what ``DistributedDataParallel`` leaves out.

DDP averages gradients, so every rank holds the same weights, but it synchronises no
statistic: each rank's BatchNorm running statistics and fake-quantize ranges follow its own
shard of the data (and DDP's ``broadcast_buffers`` copies rank 0's buffers over the others
at each forward). :func:`sync_qat` makes all of them identical on every rank -- BatchNorm
running statistics averaged weighted by the samples each rank saw, every fake-quantize and
observer range merged by its observer's own sync (min/max all-reduce, histograms summed,
moving averages combined by their counts) -- so every rank converts to the same int8 model.
``ql.QAT(sync="epoch" | "step" | "off")`` says when :func:`quantlens.train_qat` calls it;
``ql.convert`` calls it unless ``sync="off"``.

The helpers below let the training loop run under ``torchrun``: :func:`wrap_ddp`,
:func:`shard` (a ``DistributedSampler`` for datasets and DataLoaders), :func:`reduce_sums`.
Outside a process group every function here does nothing (or returns its input).

Example:
    >>> ddp = DistributedDataParallel(qat)   # qat = ql.prepare_qat(model, ql.QAT())
    >>> ... train ...; ql.sync_qat(qat)      # BatchNorm statistics and ranges, every rank
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    TensorDataset,
)

from quantlens.core import distributed
from quantlens.core.data import DEFAULT_BATCH_SIZE, Batch, _is_pair, count_batches, iter_batches
from quantlens.methods.backends import torch_ao

SYNC_MODES = ("epoch", "step", "off")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` (or ``model`` itself)."""
    ddp = torch.nn.parallel.DistributedDataParallel
    return model.module if isinstance(model, ddp) else model


def wrap_ddp(model: nn.Module) -> nn.Module:
    """``model`` inside ``DistributedDataParallel`` when a process group is initialised
    (on the GPU the parameters are on, if any); the model itself otherwise or if already
    wrapped."""
    ddp = torch.nn.parallel.DistributedDataParallel
    if not distributed.is_distributed() or isinstance(model, ddp):
        return model
    distributed.all_reduce(torch.zeros(1), "sum", what="starting distributed training")
    device = model_device(model)
    return ddp(model, device_ids=[device] if device.type == "cuda" else None)


def _batchnorms(model: nn.Module) -> list[tuple[_BatchNorm, torch.Tensor, torch.Tensor]]:
    """Each BatchNorm that tracks running statistics, with its running mean and variance."""
    return [
        (m, m.running_mean, m.running_var)
        for m in model.modules()
        if isinstance(m, _BatchNorm) and m.running_mean is not None and m.running_var is not None
    ]


def _same_weights(model: nn.Module, timeout: float | None) -> None:
    """Check the ranks hold the same parameters (a fingerprint per tensor); where they do
    not, copy rank 0's over (with a warning when they differ by more than float noise)."""
    params = [p for p in model.parameters() if p.is_floating_point()]
    if not params:
        return
    with torch.no_grad():
        prints = torch.stack(
            [torch.stack([p.double().sum(), p.double().abs().sum()]) for p in params]
        )
    lo, hi = distributed.merge_extremes(
        prints.cpu().reshape(-1), prints.cpu().reshape(-1), timeout=timeout
    )
    if torch.equal(lo, hi):
        return
    spread = float(((hi - lo).abs() / hi.abs().clamp(min=1e-12)).max())
    if spread > 1e-4:
        warnings.warn(
            f"the ranks hold different weights (relative spread {spread:.2g}): train the prepared "
            "model inside DistributedDataParallel; converting with rank 0's weights",
            stacklevel=3,
        )
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).double() for p in params])
        distributed.broadcast(flat, timeout=timeout)
        for p, piece in zip(params, flat.split([p.numel() for p in params])):
            p.copy_(piece.reshape(p.shape).to(p.dtype))


def sync_qat(model: nn.Module, *, samples: float = 1.0, timeout: float | None = None) -> int:
    """Make a prepared QAT model identical on every rank of the process group: BatchNorm
    running statistics averaged (weighted by ``samples``), every fake-quantize and observer
    range merged over the ranks, and the weights checked equal (rank 0's are copied over
    where they are not). A collective: every rank calls it at the same point. Outside a
    process group it does nothing.

    Call it in your own training loop where ``ql.QAT(sync=...)`` says (each step or each
    epoch, on every rank); :func:`quantlens.train_qat` and ``ql.convert`` call it for you.

    Args:
        model: the prepared model (or the ``DistributedDataParallel`` around it).
        samples: how many samples this rank trained on since the last sync (the weight of
            its BatchNorm statistics; equal weights by default).
        timeout: seconds to wait for the other ranks (default: ``QUANTLENS_SYNC_TIMEOUT`` or 300).

    Returns:
        The number of BatchNorm layers and ranges synchronised (0 outside a group).

    Raises:
        DistributedError: another rank failed or did not reach the sync in time.

    Example:
        >>> for epoch in range(epochs):
        ...     train_one_epoch(ddp_model)
        ...     ql.sync_qat(ddp_model)    # every rank: the same statistics and ranges
    """
    if not distributed.is_distributed():
        return 0
    model = unwrap(model)
    _same_weights(model, timeout)
    bns = _batchnorms(model)
    if bns:  # one collective for every BatchNorm's statistics, one for the batch counters
        # a rank that trained on nothing weighs (almost) nothing; if none did: equal weights
        weight = max(float(samples), 1e-9)
        stats = torch.cat([torch.cat([mean, var]) for _, mean, var in bns])
        avg, _ = distributed.weighted_average(stats, weight, timeout=timeout)
        counts = [bn.num_batches_tracked for bn, _, _ in bns if bn.num_batches_tracked is not None]
        most = (
            distributed.all_reduce(torch.stack(counts), "max", timeout=timeout)
            if counts
            else torch.zeros(0)
        )
        with torch.no_grad():
            for (bn, mean, var), piece in zip(
                bns, avg.split([2 * bn.num_features for bn, _, _ in bns])
            ):
                mean.copy_(piece[: bn.num_features])
                var.copy_(piece[bn.num_features :])
            for counter, value in zip(counts, most):
                counter.copy_(value)
    ranges = [
        m
        for m in model.modules()
        if isinstance(m, (torch_ao.CoreFakeQuantize, torch_ao.CoreObserver))
    ]
    for m in ranges:
        m.sync(timeout=timeout)
        if isinstance(m, torch_ao.CoreObserver):
            m.observer.share(distributed.world_size())
    return len(bns) + len(ranges)


# --- the data each rank trains on -----------------------------------------------------------


class Shard:
    """This rank's share of ``train_data``, epoch by epoch (see :func:`shard`)."""

    def __init__(self, data, sampler: DistributedSampler | None, lockstep: bool) -> None:
        self.data, self.sampler, self.lockstep = data, sampler, lockstep

    def epoch(self, epoch: int, what: str = "train_data") -> Iterator[Batch]:
        """The batches of one epoch (``set_epoch`` reshuffles a ``DistributedSampler``)."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        batches = iter_batches(self.data, what=what)
        if not self.lockstep:
            yield from batches
            return
        world, me = distributed.world_size(), distributed.rank()
        mine = (b for i, b in enumerate(batches) if i % world == me)
        while True:  # every rank steps together; the first rank out of batches ends the epoch
            batch = next(mine, None)
            flag = torch.tensor([float(batch is not None)])
            more = distributed.all_reduce(flag, "min", what="stepping with the other ranks")
            if more[0] < 1 or batch is None:  # (None only where some rank ran out: min is 0)
                return
            yield batch

    def __len__(self) -> int:
        """The number of batches per epoch on this rank (0 when it cannot be known)."""
        n = count_batches(self.data) or 0
        return n // distributed.world_size() if self.lockstep else n


def _loader(dataset, batch_size: int, shuffle: bool, like: DataLoader | None = None):
    world, me = distributed.world_size(), distributed.rank()
    drop_last = bool(like.drop_last) if like is not None else False
    sampler: DistributedSampler[int] = DistributedSampler(
        dataset, world, me, shuffle=shuffle, drop_last=drop_last
    )
    if like is None:
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last)
    else:
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=like.num_workers,
            collate_fn=like.collate_fn,
            pin_memory=like.pin_memory,
        )
    return Shard(loader, sampler, lockstep=False)


def shard(data) -> Shard:
    """Split labelled training data over the ranks of the process group.

    - a ``DataLoader`` is rebuilt with a ``DistributedSampler`` (shuffling if it shuffled;
      its batch size is per rank, as with DDP) unless its sampler already is one;
    - a map-style ``Dataset``: batches of 64 per rank, shuffled each epoch;
    - an ``(inputs, labels)`` pair of tensors: rank ``r`` takes samples ``r, r + N, ...`` in
      batches of ``ceil(64 / N)``, so ``N`` ranks step through the same global batches of 64,
      in the same order, as one process does;
    - any other iterable of batches: batch ``i`` goes to rank ``i % N``, and the ranks stop
      together when the first runs out.

    Outside a group the data is returned as it is (a ``Dataset`` as a shuffling DataLoader
    of 64).

    Example:
        >>> part = shard((x, y)); [b.size for b in part.epoch(0)]   # 2 ranks: batches of 32
    """
    is_map = isinstance(data, Dataset) and not isinstance(data, (IterableDataset, Iterable))
    if not distributed.is_distributed():
        if is_map:
            data = DataLoader(data, batch_size=DEFAULT_BATCH_SIZE, shuffle=True)
        return Shard(data, None, lockstep=False)
    if isinstance(data, DataLoader) and not isinstance(data.dataset, IterableDataset):
        if isinstance(data.sampler, DistributedSampler):
            return Shard(data, data.sampler, lockstep=False)
        if data.batch_size is not None:
            shuffle = isinstance(data.sampler, RandomSampler)
            return _loader(data.dataset, data.batch_size, shuffle, like=data)
    if is_map:
        return _loader(data, DEFAULT_BATCH_SIZE, shuffle=True)
    if isinstance(data, tuple) and _is_pair(data):
        per_rank = math.ceil(DEFAULT_BATCH_SIZE / distributed.world_size())
        return _loader(TensorDataset(*data), per_rank, shuffle=False)
    return Shard(data, None, lockstep=True)


def split_round_robin(data) -> Iterator[Batch]:
    """Batch ``i`` of ``data`` on rank ``i % N`` (evaluation: every sample counted once)."""
    world, me = distributed.world_size(), distributed.rank()
    return (b for i, b in enumerate(iter_batches(data, what="eval_data")) if i % world == me)


def on_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` with its tensors (inputs and labels) on ``device`` (the model's)."""
    if device.type == "cpu" and all(
        not isinstance(t, torch.Tensor) or t.device.type == "cpu"
        for t in (*batch.args, *batch.kwargs.values(), batch.labels)
    ):
        return batch
    move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t
    return Batch(
        tuple(move(a) for a in batch.args),
        {k: move(v) for k, v in batch.kwargs.items()},
        move(batch.labels),
    )


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s first parameter lives (CPU for a model without any)."""
    return next(itertools.chain(model.parameters(), [torch.empty(0)])).device


def reduce_sums(*values: float) -> list[float]:
    """The sums of ``values`` over the ranks (float64; the values themselves outside a group)."""
    packed = torch.tensor(values, dtype=torch.float64)
    return distributed.all_reduce(packed, "sum").tolist()
