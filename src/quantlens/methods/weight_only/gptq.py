"""GPTQ: quantize a Linear weight column by column, compensating each rounding error.

Frantar, Ashkboos, Hoefler & Alistarh, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers" (ICLR 2023).

For a layer ``y = W x`` with calibration inputs ``X`` (columns = tokens), GPTQ minimises the
*output* error ``||W X - Q X||_2^2`` rather than the weight error. Its Hessian with respect
to one row of ``W`` is ``H = 2 X X^T`` (the same for every row). Quantizing column ``q``
and updating the not-yet-quantized columns ``F`` by the optimal brain surgeon step

    delta_F = - (w_q - quant(w_q)) / [H_F^{-1}]_qq * (H_F^{-1})_{:, q}

is the whole algorithm. With the upper Cholesky factor of ``H^{-1}`` the updates of every
step come from one matrix, and "lazy batches" apply them block by block. Groups get their
scale and zero-point when the first column of the group is reached, from the weights as
updated so far (so later groups absorb the earlier groups' errors).

By default quantlens collects ``H`` for every layer in one pass of the *float* model over
the calibration data (the layers do not see each other's quantization error), which keeps
the pass cheap. ``WeightOnly(true_sequential=True)`` runs block by block instead, as the
reference implementation does: each layer's ``H`` comes from inputs that went through the
layers quantized before it (:mod:`.sequential`).

Act-order (columns by decreasing ``diag(H)``) and static groups (group parameters fitted
on the original weight, so the groups keep their plain layout under act-order) are the two
options of :func:`gptq_quantize`. Static group parameters come from HQQ's solver
(:mod:`.hqq`: each group's grid is min-max's or a tighter one with a smaller l4 error)
rather than from the min and max alone: on six SmolLM2 layers at 3 bits, g128, act-order,
the held-out output error fell by 13% on average, and in every layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from quantlens.core import distributed
from quantlens.core.data import observe
from quantlens.core.qparams import compute_qparams
from quantlens.core.qtensor import QTensor, integer_dtype
from quantlens.core.scheme import QScheme
from quantlens.errors import ConfigError, SchemeError
from quantlens.methods.base import QuantContext, resolve
from quantlens.methods.weight_only.config import WeightOnly
from quantlens.methods.weight_only.hqq import hqq_quantize
from quantlens.methods.weight_only.registry import Algorithm, register_algorithm
from quantlens.methods.weight_only.sequential import quantize_sequentially

BLOCK_SIZE = 128
PERCDAMP = 0.01


@dataclass(frozen=True)
class GPTQOptions:
    """How GPTQ orders columns and fits groups (see :func:`gptq_quantize`)."""

    act_order: bool = True
    static_groups: bool = True

    def astuple(self) -> tuple[bool, bool]:
        """``(act_order, static_groups)``."""
        return (self.act_order, self.static_groups)


@dataclass(frozen=True)
class LayerStats:
    """What GPTQ's calibration gathered for one layer.

    Attributes:
        hessian: ``H = 2 X X^T / n`` of the layer's inputs, ``(in, in)`` float32.
        act_order, static_groups: the layer's :class:`GPTQOptions`.
        qweight: the layer's codes when they were computed while calibrating
            (true-sequential), else None.
    """

    hessian: torch.Tensor
    act_order: bool = True
    static_groups: bool = True
    qweight: QTensor | None = None


@torch.no_grad()
def collect_hessians(
    model: nn.Module,
    names: list[str],
    calib_data,
    *,
    limit: int | None = None,
    progress: bool | None = None,
    sync: bool = True,
) -> dict[str, torch.Tensor]:
    """``H = 2 X X^T / n`` of the inputs of the named Linear layers over ``calib_data``.

    Args:
        model: the float model (run, not changed).
        names: module names of ``nn.Linear`` layers.
        calib_data: any form :func:`quantlens.core.data.iter_batches` accepts.
        limit: stop after this many batches.
        sync: under ``torch.distributed``, sum ``X X^T`` and the sample counts over the ranks
            (each ran its own share of ``calib_data``), so that every rank gets the Hessians of
            all the data; nothing changes outside a process group.

    Returns:
        ``{name: H}`` with ``H`` float32 ``(in_features, in_features)``.
    """
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()  # (tokens, in)
            sums[name] = sums.get(name, 0) + x.T @ x
            counts[name] = counts.get(name, 0) + x.shape[0]

        return record

    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    observe(
        model,
        calib_data,
        handles,
        limit=limit,
        progress=progress,
        what="GPTQ calibration",
        empty="GPTQ needs a few batches of real inputs",
    )
    if sync and distributed.is_distributed():
        for n in names:  # the same order on every rank; a layer this rank never ran adds zeros
            width = modules[n].in_features
            total = sums.get(n, torch.zeros(width, width, dtype=torch.float64))
            sums[n] = distributed.all_reduce(torch.as_tensor(total, dtype=torch.float64), "sum")
            counts[n] = int(distributed.all_reduce(torch.tensor([float(counts.get(n, 0))]), "sum"))
        sums = {n: s for n, s in sums.items() if counts[n]}
    return {n: (2 * sums[n] / counts[n]).float() for n in sums}


@torch.no_grad()
def gptq_quantize(
    W: torch.Tensor,
    H: torch.Tensor,
    scheme: QScheme,
    *,
    blocksize: int = BLOCK_SIZE,
    percdamp: float = PERCDAMP,
    act_order: bool = False,
    static_groups: bool | None = None,
) -> QTensor:
    """GPTQ of one Linear weight.

    Args:
        W: ``(rows, columns)`` float weight (``out_features, in_features``).
        H: ``(columns, columns)`` Hessian from :func:`collect_hessians`.
        scheme: uniform scheme, per-tensor, per-channel (axis 0) or per-group (axis -1).
        blocksize: columns per lazy batch.
        percdamp: dampening added to ``H``'s diagonal, as a fraction of its mean.
        act_order: quantize columns in order of decreasing ``diag(H)`` (the inputs with the
            most energy first).
        static_groups: fit every group's scale and zero-point on the original weight before
            any column is quantized (and before act-order permutes the columns), so each
            group keeps one scale over its plain, contiguous columns; False fits a group when
            its first column is reached, on the weight as updated so far (the original GPTQ;
            later groups absorb earlier errors into their range). Default: ``act_order``.
            Act-order needs static groups: quantlens stores groups in their plain layout,
            with no per-column group index.

    Returns:
        A :class:`QTensor` of ``W`` under ``scheme``.

    Raises:
        SchemeError: a codebook scheme, a weight that is not 2-D per-row, or act-order
            without static groups.

    Example:
        >>> H = collect_hessians(model, ["fc"], calib)["fc"]
        >>> qt = gptq_quantize(model.fc.weight, H, scheme, act_order=True)
    """
    static_groups = act_order if static_groups is None else static_groups
    if act_order and not static_groups and scheme.granularity == "per_group":
        raise SchemeError(
            "GPTQ act_order needs static_groups=True (groups keep their plain column layout); "
            "pass static_groups=True or act_order=False"
        )
    if scheme.codebook is not None:
        raise SchemeError("GPTQ needs a uniform grid; use algorithm='rtn' for codebook schemes")
    axis = 0 if scheme.axis is None else scheme.axis  # None only per tensor
    if (
        W.ndim != 2
        or scheme.granularity == "per_channel"
        and axis % 2 != 0
        or scheme.granularity == "per_group"
        and axis % 2 != 1
    ):
        raise SchemeError(
            "GPTQ quantizes 2-D weights per output row: per_channel(axis=0) or per_group(axis=-1)"
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the column loop is many tiny ops: threads only add sync cost
    try:
        return _gptq(
            W.detach().float().clone(),
            H.detach().float().clone(),
            scheme,
            blocksize,
            percdamp,
            act_order,
            static_groups,
        )
    finally:
        torch.set_num_threads(threads)


def _gptq(W, H, scheme, blocksize, percdamp, act_order, static_groups) -> QTensor:
    rows, columns = W.shape  # W: (rows, columns), H: (columns, columns)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    group = scheme.group_size if scheme.granularity == "per_group" else columns
    n_groups = -(-columns // group)
    # static parameters: per tensor, per channel, or per group of the original weight
    if scheme.granularity == "per_tensor":
        scale, zero = compute_qparams(W.min(), W.max(), scheme)
        static = (scale.expand(rows, n_groups), zero.expand(rows, n_groups))
    elif static_groups or scheme.granularity == "per_channel":
        fitted = hqq_quantize(W, scheme)  # each group's grid fitted on the original weight
        static = (fitted.scale.reshape(rows, n_groups), fitted.zero_point.reshape(rows, n_groups))
    else:
        static = None
    perm = torch.argsort(torch.diag(H), descending=True) if act_order else torch.arange(columns)
    W, H = W[:, perm], H[perm][:, perm]
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(columns)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)

    if static is None and group % blocksize and blocksize % group:
        blocksize = group
    Q = torch.zeros(rows, columns)
    scales = torch.zeros(rows, n_groups)
    zeros = torch.zeros(rows, n_groups, dtype=torch.int32)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        W1 = W[:, i1:i2].clone()  # (rows, count)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            g = int(perm[i1 + i]) // group
            if static is not None:
                s, z = static[0][:, g], static[1][:, g]
            elif (i1 + i) % group == 0:  # the first column of a group: fit it as updated so far
                ahead = max(0, group - (i2 - i1 - i))  # the group runs past this block
                lo, hi = torch.aminmax(
                    torch.cat([W1[:, i : i + group], W[:, i2 : i2 + ahead]], 1), dim=1
                )
                s, z = compute_qparams(lo, hi, scheme)
                scales[:, g], zeros[:, g] = s, z
                zf = z.float()
            w = W1[:, i]  # (rows,)
            q = (
                torch.round(w / s)
                .add_(zf if static is None else z)
                .clamp_(scheme.qmin, scheme.qmax)
            )
            Q[:, i1 + i] = q
            err = (w - s * (q - (zf if static is None else z))) / Hinv1[i, i]
            W1[:, i:].addr_(err, Hinv1[i, i:], alpha=-1)
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]

    if static is not None:
        scales, zeros = static
    Q = Q[:, torch.argsort(perm)]
    if scheme.granularity == "per_tensor":
        scale, zero = scales[0, 0], zeros[0, 0]
    elif scheme.granularity == "per_channel":
        scale, zero = scales[:, 0], zeros[:, 0]
    else:
        scale, zero = scales, zeros  # (rows, n_groups)
    codes = Q.to(integer_dtype(scheme))
    return QTensor(codes, scale.contiguous(), zero.to(torch.int32).contiguous(), scheme)


# --- registration -------------------------------------------------------------------------


def _weight_only(ctx: QuantContext, name: str) -> WeightOnly:
    """The resolved config of layer ``name``, one the WeightOnly method quantizes."""
    cfg = resolve(ctx.config, name)
    assert isinstance(cfg, WeightOnly), name
    return cfg


def _collect(model: nn.Module, names: list[str], ctx: QuantContext) -> dict[str, Any]:
    """Each layer's :class:`LayerStats`: Hessians from one pass of the float model, or, for
    layers whose config asks for ``true_sequential``, Hessians and codes layer group by layer
    group (:func:`.sequential.quantize_sequentially`)."""
    if ctx.calib_data is None:
        raise ConfigError(
            "algorithm='gptq' needs calibration data: "
            "ql.quantize(model, config, calib_data=batches)"
        )
    sync = not isinstance(ctx.config, WeightOnly) or ctx.config.sync
    configs = {n: _weight_only(ctx, n) for n in names}
    modules = dict(model.named_modules())
    options = {n: GPTQOptions(c.act_order, bool(c.static_groups)) for n, c in configs.items()}
    sequential = [n for n in names if configs[n].true_sequential]
    at_once = [n for n in names if n not in sequential]
    limit, progress = ctx.calib_batches, ctx.progress
    hessians = (
        collect_hessians(model, at_once, ctx.calib_data, limit=limit, progress=progress, sync=sync)
        if at_once
        else {}
    )
    stats = {n: LayerStats(h, *options[n].astuple()) for n, h in hessians.items()}
    if sequential:

        def quantize_layer(name: str, weight: torch.Tensor, hessian: torch.Tensor) -> QTensor:
            scheme = configs[name].scheme_for(tuple(modules[name].weight.shape))
            act_order, static_groups = options[name].astuple()
            return gptq_quantize(
                weight, hessian, scheme, act_order=act_order, static_groups=static_groups
            )

        done = quantize_sequentially(
            model,
            sequential,
            ctx.calib_data,
            quantize_layer,
            limit=limit,
            progress=progress,
            sync=sync,
        )
        for n, (hessian, qweight) in done.items():
            stats[n] = LayerStats(hessian, *options[n].astuple(), qweight)
    return stats


def _quantize(weight: torch.Tensor, scheme: QScheme, stats: LayerStats) -> QTensor:
    if stats.qweight is not None:  # true-sequential: quantized while collecting
        return stats.qweight
    return gptq_quantize(
        weight,
        stats.hessian,
        scheme,
        act_order=stats.act_order,
        static_groups=stats.static_groups,
    )


register_algorithm(
    Algorithm("gptq", _quantize, collect=_collect, kinds=("linear",), fallback="hqq")
)
