"""Per-input-channel scales folded into the op before a Linear: the machinery AWQ and
SmoothQuant share.

Both rewrite ``y = W x`` as ``y = (W diag(s)) (x / s)``: the Linear's weight columns are
multiplied by ``s`` and ``1 / s`` is folded into the op that produced ``x`` (the weight and
bias of a LayerNorm / RMSNorm, or the output rows of the previous Linear), so the float model
computes the same function and nothing is added at run time.

Which op feeds which Linears is found generically, with no per-architecture table: one
forward of the first calibration batch with hooks records every Linear's input tensor and
every norm's or Linear's output tensor. Linears that receive the *same* tensor form a group
(``q_proj, k_proj, v_proj``); its producer is the module whose output *is* that tensor, or
else the last Linear run before the group whose output has the input's shape (``up_proj``
before ``down_proj``: ``act(gate) * up`` is linear in ``up``). A fold is kept only if it
provably leaves the model's function unchanged: the candidates are folded with random
scales and the model's output on that batch compared with the float output (a producer
whose output also feeds a residual add, or a GELU between two Linears, fails this check and
its group has no producer). A group without a producer can still be scaled where the
quantized layers keep the scale themselves (:mod:`quantlens.methods.scale_apply`,
:mod:`quantlens.nn.input_scale`: ``y = W' (x / s)`` at run time, one element-wise op).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from quantlens.core import distributed
from quantlens.core.data import (
    first_batch,
    first_tensor,
    is_one_shot,
    iter_batches,
    observe,
    run_batch,
)
from quantlens.methods.base import QuantContext

SAMPLE_ROWS = 512
"""Input rows (tokens) of each group kept to score candidate scales on."""

FOLD_RTOL = 1e-4
"""Relative tolerance of the function-preservation check of a fold."""


@dataclass
class FoldGroup:
    """Linears that take the same input, and the op the inverse scale is folded into.

    Attributes:
        consumers: module names of the Linears (all of those reading the tensor).
        producer: module name of the norm or Linear whose output they read, or None.
    """

    consumers: tuple[str, ...]
    producer: str | None


@dataclass
class InputStats:
    """Per-channel statistics of a group's input over the calibration data.

    Attributes:
        absmax: ``max |x_j|`` per input channel, shape ``(C,)``.
        absmean: ``mean |x_j|`` per input channel, shape ``(C,)``.
        sample: up to :data:`SAMPLE_ROWS` input rows, shape ``(n, C)``.
    """

    absmax: torch.Tensor
    absmean: torch.Tensor
    sample: torch.Tensor


def replayable_calib(ctx: QuantContext):
    """``ctx.calib_data``, kept as a list of batches in ``ctx`` when it is a one-shot iterator
    (a generator): tracing, statistics and any later calibration pass each read it again."""
    if is_one_shot(ctx.calib_data, "calib_data"):
        ctx.calib_data = list(
            iter_batches(ctx.calib_data, limit=ctx.calib_batches, what="calib_data")
        )
    return ctx.calib_data


def sum_over_ranks(errors: list[float], sync: bool = True) -> list[float]:
    """Candidate errors summed over ``torch.distributed`` ranks (each scored its own sample),
    so that every rank picks the same candidate; unchanged outside a process group.

    Example:
        >>> sum_over_ranks([2.0, 1.0])
        [2.0, 1.0]
    """
    total = torch.tensor(errors, dtype=torch.float64)
    if sync and distributed.is_distributed():
        total = distributed.all_reduce(total, "sum")
    return total.tolist()


def _is_producer(module: nn.Module) -> bool:
    """A Linear, or a leaf with a 1-D ``weight`` (LayerNorm, RMSNorm and the like)."""
    if isinstance(module, nn.Linear):
        return True
    weight = getattr(module, "weight", None)
    return not list(module.children()) and isinstance(weight, torch.Tensor) and weight.dim() == 1


@torch.no_grad()
def trace_groups(model: nn.Module, batch) -> list[FoldGroup]:
    """Group the model's Linears by shared input and find each group's candidate producer
    (see the module docstring), from one forward of ``batch``; unverified."""
    order: list[tuple[str, str, torch.Tensor]] = []  # (event, name, tensor) in call order

    def pre(name):
        def record(module, inputs):
            if inputs and isinstance(inputs[0], torch.Tensor):
                order.append(("in", name, inputs[0]))

        return record

    def post(name):
        def record(module, inputs, output):
            if isinstance(output, torch.Tensor):
                order.append(("out", name, output))

        return record

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_pre_hook(pre(name)))
        if _is_producer(module):
            handles.append(module.register_forward_hook(post(name)))
    try:
        run_batch(model, batch, "calib_data")
    finally:
        for h in handles:
            h.remove()
    groups: list[tuple[torch.Tensor, list[str], int]] = []  # (input, consumers, first event)
    for i, (event, name, tensor) in enumerate(order):
        if event != "in":
            continue
        for group in groups:
            if group[0] is tensor:
                if name not in group[1]:
                    group[1].append(name)
                break
        else:
            groups.append((tensor, [name], i))
    out, claimed = [], set()
    for tensor, consumers, first in groups:
        producer = None
        for event, name, output in reversed(order[:first]):
            if event != "out" or name in consumers or name in claimed:
                continue
            if output is tensor or (tensor._base is output and tensor.shape == output.shape):
                producer = name  # (a full slice such as hidden[:, -0:] is the same tensor)
                break
        if producer is None:  # the last Linear before the group, of the input's shape
            for event, name, output in reversed(order[:first]):
                if event == "out" and isinstance(model.get_submodule(name), nn.Linear):
                    if output.shape == tensor.shape and name not in consumers:
                        producer = name if name not in claimed else None
                    break
        if producer is not None:
            claimed.add(producer)
        out.append(FoldGroup(tuple(consumers), producer))
    return out


@torch.no_grad()
def fold(model: nn.Module, group: FoldGroup, s: torch.Tensor) -> None:
    """Multiply the consumers' weight columns by ``s`` and divide the producer's output
    channels (a norm's weight and bias, a Linear's rows and bias) by ``s``, in place."""
    assert group.producer is not None
    for name in group.consumers:
        weight = consumer(model, name).weight
        weight.mul_(s.to(weight.device, weight.dtype))
    producer = model.get_submodule(group.producer)
    weight = cast(torch.Tensor, producer.weight)  # a norm's or a Linear's weight
    inverse = s.to(weight.device, weight.dtype)
    weight.div_(inverse.unsqueeze(1) if isinstance(producer, nn.Linear) else inverse)
    bias = getattr(producer, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias.div_(s.to(bias.device, bias.dtype))


def consumer(model: nn.Module, name: str) -> nn.Linear:
    """The consumer layer ``name`` of a fold group (every consumer is an ``nn.Linear``).

    Args:
        model: the model holding the layer.
        name: its qualified name (one of :attr:`FoldGroup.consumers`).

    Returns:
        The layer.

    Example:
        >>> consumer(model, group.consumers[0]).in_features
        768
    """
    return cast(nn.Linear, model.get_submodule(name))


def _group_params(model: nn.Module, group: FoldGroup) -> list[torch.Tensor]:
    assert group.producer is not None
    names = (*group.consumers, group.producer)
    return [p for n in names for p in model.get_submodule(n).parameters(recurse=False)]


def _close(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None or a.shape != b.shape:
        return False
    a, b = a.float(), b.float()
    return bool((a - b).abs().max() <= FOLD_RTOL * (b.abs().max() + 1e-6))


@torch.no_grad()
def _preserves(model: nn.Module, groups: list[FoldGroup], batch, reference) -> bool:
    """Fold random scales into ``groups``, run ``batch``, compare, restore."""
    params = {id(p): p for g in groups for p in _group_params(model, g)}
    saved = {k: p.detach().clone() for k, p in params.items()}
    generator = torch.Generator().manual_seed(0)
    try:
        for g in groups:
            width = consumer(model, g.consumers[0]).in_features
            fold(model, g, torch.rand(width, generator=generator) * 1.5 + 0.5)
        return _close(first_tensor(run_batch(model, batch, "calib_data")), reference)
    finally:
        for k, p in params.items():
            p.copy_(saved[k])


@torch.no_grad()
def foldable_groups(
    model: nn.Module, names: list[str], calib_data
) -> tuple[list[FoldGroup], list[FoldGroup]]:
    """The groups holding any of ``names`` whose producer takes the fold without changing
    the model's output, and those that have none (no producer, or the check failed).

    Args:
        model: the float model (eval mode; left unchanged).
        names: the Linears to be quantized.
        calib_data: calibration data; its first batch is traced.

    Returns:
        ``(foldable, unfoldable)``.
    """
    batch = first_batch(calib_data, "calib_data")
    wanted = set(names)
    groups = [g for g in trace_groups(model, batch) if wanted & set(g.consumers)]
    candidates = [g for g in groups if g.producer is not None]
    reference = first_tensor(run_batch(model, batch, "calib_data"))
    good = _bisect(model, candidates, batch, reference)
    return good, [g for g in groups if g not in good]


def _bisect(model: nn.Module, candidates: list[FoldGroup], batch, reference) -> list[FoldGroup]:
    """The candidates that preserve the output: all at once, else each half in turn (a few
    bad folds among many cost a few forwards each, not one forward per candidate)."""
    if not candidates or _preserves(model, candidates, batch, reference):
        return candidates
    if len(candidates) == 1:
        return []
    half = len(candidates) // 2
    return _bisect(model, candidates[:half], batch, reference) + _bisect(
        model, candidates[half:], batch, reference
    )


@torch.no_grad()
def collect_input_stats(
    model: nn.Module,
    groups: list[FoldGroup],
    calib_data,
    *,
    limit: int | None = None,
    progress: bool | None = None,
    sync: bool = True,
    what: str = "calibration",
) -> list[InputStats]:
    """Per-channel ``max|x|``, ``mean|x|`` and a sample of rows of each group's input.

    Args:
        model: the float model (run, not changed).
        groups: from :func:`foldable_groups`; each group's first consumer is observed.
        calib_data: any form :func:`quantlens.core.data.iter_batches` accepts.
        limit: stop after this many batches.
        sync: under ``torch.distributed``, merge the maxima and means over the ranks (the
            sample stays each rank's own); nothing changes outside a process group.

    Returns:
        One :class:`InputStats` per group, in order.
    """
    absmax: dict[int, torch.Tensor] = {}
    abssum: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}
    samples: dict[int, list[torch.Tensor]] = {}

    def hook(i):
        def record(module, inputs):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float().cpu()  # (tokens, C)
            a = x.abs()
            absmax[i] = torch.maximum(absmax[i], a.amax(0)) if i in absmax else a.amax(0)
            abssum[i] = abssum.get(i, 0) + a.sum(0, dtype=torch.float64)
            counts[i] = counts.get(i, 0) + x.shape[0]
            kept = sum(len(t) for t in samples.setdefault(i, []))
            if kept < SAMPLE_ROWS:
                samples[i].append(x[: SAMPLE_ROWS - kept].clone())

        return record

    handles = [
        model.get_submodule(g.consumers[0]).register_forward_pre_hook(hook(i))
        for i, g in enumerate(groups)
    ]
    observe(model, calib_data, handles, limit=limit, progress=progress, what=what)
    out = []
    for i, g in enumerate(groups):
        width = consumer(model, g.consumers[0]).in_features
        top = absmax.get(i, torch.zeros(width))
        total = torch.as_tensor(abssum.get(i, torch.zeros(width)), dtype=torch.float64)
        count = torch.tensor([float(counts.get(i, 0))], dtype=torch.float64)
        if sync and distributed.is_distributed():
            top = distributed.all_reduce(top.clone(), "max")
            total = distributed.all_reduce(total.clone(), "sum")
            count = distributed.all_reduce(count, "sum")
        mean = (total / count.clamp_min(1)).float()
        sample = torch.cat(samples[i]) if i in samples else torch.zeros(0, width)
        out.append(InputStats(top, mean, sample))
    return out


def calibrated_groups(
    model: nn.Module,
    names: list[str],
    ctx: QuantContext,
    *,
    sync: bool,
    what: str,
    explicit: bool = False,
) -> tuple[list[FoldGroup], list[FoldGroup], list[InputStats]]:
    """The input groups of ``names`` whose scales can be folded, the groups with nothing to
    fold them into, and the input statistics over ``ctx.calib_data`` of each foldable group
    and, with ``explicit`` (the quantized layers can keep an input scale), of each
    unfoldable one after them."""
    groups, unfoldable = foldable_groups(model, names, replayable_calib(ctx))
    stats = collect_input_stats(
        model,
        groups + (unfoldable if explicit else []),
        ctx.calib_data,
        limit=ctx.calib_batches,
        progress=ctx.progress,
        sync=sync,
        what=what,
    )
    return groups, unfoldable, stats
