"""BatchNorm folding: fold an eval-mode BatchNorm into the Conv/Linear before it.

For a layer ``y = W x + b`` followed by ``BN(y) = γ (y - μ) / √(σ² + ε) + β`` (running
statistics ``μ``, ``σ²``), the folded layer computes the same function with

    W' = W · γ / √(σ² + ε)            (scaled per output channel)
    b' = (b - μ) · γ / √(σ² + ε) + β

The graph-mode int8 path lets torch.fx do the same fusion (Conv+BN(+ReLU), Linear+BN);
these functions serve the eager fallback and anyone who wants a folded float model.

``nn.SyncBatchNorm`` (what ``convert_sync_batchnorm`` puts in a distributed training
script) is the same function in eval mode: it folds like BatchNorm here, and
:func:`plain_batchnorms` / :func:`sync_batchnorms_back` let the graph-mode fusion patterns,
which match BatchNorm1d/2d/3d exactly, see it as one.

Example:
    >>> folded = fold_batchnorms(model.eval())   # [("stem.0", "stem.1"), ...]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from quantlens.errors import InputError


class _SumOverGroup(torch.autograd.Function):
    """All-reduce (sum) over a process group; the gradient is summed over it too."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        out = x.clone()
        torch.distributed.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone()
        torch.distributed.all_reduce(grad, group=ctx.group)
        return grad, None


class SyncedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A SyncBatchNorm for QAT training: ``nn.SyncBatchNorm``'s forward, and on CPU (gloo)
    its own synchronisation, where PyTorch's refuses to train once a process group exists
    ("expected input tensor to be on GPU") and DistributedDataParallel refuses to wrap it
    ("SyncBatchNorm layers only work with GPU modules"), so it is no subclass of it.

    On CPU in training with a process group, the batch statistics are summed over the
    group (a differentiable all-reduce of per-channel sums, sums of squares and counts),
    normalize the batch and update the running statistics (unbiased variance, as
    BatchNorm does).

    Example:
        >>> sync.__class__ = SyncedBatchNorm   # an nn.SyncBatchNorm, tensors untouched
    """

    process_group = None
    _check_input_dim = nn.SyncBatchNorm._check_input_dim
    _check_non_zero_input_channels = nn.SyncBatchNorm._check_non_zero_input_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist = torch.distributed
        if not (
            self.training
            and x.device.type == "cpu"
            and dist.is_available()
            and dist.is_initialized()
        ):
            # SyncBatchNorm's own forward: this class has its attributes (it is no subclass)
            return nn.SyncBatchNorm.forward(cast(nn.SyncBatchNorm, self), x)
        c, dims = x.shape[1], [0, *range(2, x.ndim)]
        count = x.new_tensor([x.numel() / c])
        stats = _SumOverGroup.apply(
            torch.cat([x.sum(dims), x.square().sum(dims), count]), self.process_group
        )
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean.square()).clamp_min(
            0
        )  # (C,), biased: normalizes the batch
        tracked, running_mean, running_var = (
            self.num_batches_tracked,
            self.running_mean,
            self.running_var,
        )
        if (
            self.track_running_stats
            and tracked is not None
            and running_mean is not None
            and running_var is not None
        ):
            with torch.no_grad():
                tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(tracked)
                running_mean.lerp_(mean.detach(), m)
                running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), m)
        shape = (1, c) + (1,) * (x.ndim - 2)
        y = (x - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape) if self.affine else y


_BN = nn.modules.batchnorm._BatchNorm
FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, SyncedBatchNorm)
_PLAIN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
# normalizations over each input's own statistics: nothing to fold, Static/QAT keep them float
PER_SAMPLE_NORMS = (
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)


def norm_reason(module: nn.Module) -> str:
    """Why Static/QAT leave a GroupNorm/LayerNorm/InstanceNorm in float (summary text)."""
    return (
        "normalizes with each input's own statistics, so unlike BatchNorm nothing folds into the "
        f"layer before it; {type(module).__name__} runs in float between DeQuant/Quant"
    )


def bn_scale(bn: nn.modules.batchnorm._BatchNorm, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``γ / √(σ² + ε)`` per channel, ``(C,)``: what folding ``bn`` multiplies a weight's rows by.

    Args:
        bn: a BatchNorm with running statistics.
        dtype: compute in this dtype (None: the running variance's, as the BatchNorm does).

    Returns:
        The per-channel scale.

    Example:
        >>> w_folded = conv.weight * bn_scale(bn).reshape(-1, 1, 1, 1)
    """
    if bn.running_var is None:
        raise InputError(
            f"{type(bn).__name__} keeps no running statistics (track_running_stats=False); "
            "only a BatchNorm with running statistics folds"
        )
    var = bn.running_var if dtype is None else bn.running_var.to(dtype)
    gamma = bn.weight.to(var.dtype) if bn.weight is not None else torch.ones_like(var)
    return gamma / torch.sqrt(var + bn.eps)


@torch.no_grad()
def fold_bn_params(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W', b')`` of a Conv/Linear with ``weight`` ``(C_out, ...)`` and ``bias`` folded with
    ``bn``.

    Args:
        weight: the layer's weight, output channels first.
        bias: its bias ``(C_out,)`` or None (treated as zeros).
        bn: a BatchNorm with running statistics over the ``C_out`` channels.

    Returns:
        The folded weight and bias, in the weight's dtype.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise InputError(
            "cannot fold a BatchNorm without running statistics (track_running_stats=False)"
        )
    if bn.num_features != weight.shape[0]:
        raise InputError(
            f"BatchNorm has {bn.num_features} channels but the layer has {weight.shape[0]} outputs"
        )
    mean = bn.running_mean.double()
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    b = bias.double() if bias is not None else torch.zeros_like(mean)
    factor = bn_scale(bn, torch.float64)  # γ / √(σ² + ε), (C_out,)
    w_folded = weight.double() * factor.reshape(-1, *([1] * (weight.ndim - 1)))
    b_folded = (b - mean) * factor + beta
    return w_folded.to(weight.dtype), b_folded.to(weight.dtype)


@torch.no_grad()
def fold_pair(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold ``bn`` into ``layer`` in place (the caller removes ``bn`` from the model)."""
    if not isinstance(layer, FOLDABLE) or getattr(layer, "transposed", False):
        raise InputError(
            f"can only fold BatchNorm into Conv1d/2d/3d or Linear, not {type(layer).__name__}"
        )
    weight, bias = fold_bn_params(layer.weight, layer.bias, bn)
    layer.weight.copy_(weight)
    if layer.bias is None:
        layer.bias = nn.Parameter(bias)
    else:
        layer.bias.copy_(bias)


def find_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(layer, batchnorm)`` name pairs where the BatchNorm reads only that layer's output.

    Uses the torch.fx graph when the model traces, else adjacent entries of ``nn.Sequential``s.
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - untraceable: fall back to Sequential order
        return _sequential_pairs(model)
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), BATCHNORMS):
            continue
        src = node.args[0] if node.args else None
        if (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and isinstance(modules.get(src.target), FOLDABLE)
            and len(src.users) == 1
            and sum(1 for n in graph.nodes if n.op == "call_module" and n.target == src.target) == 1
        ):
            pairs.append((str(src.target), str(node.target)))  # call_module: module names
    return pairs


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (n1, m1), (n2, m2) in itertools.pairwise(children):
                if isinstance(m1, FOLDABLE) and isinstance(m2, BATCHNORMS):
                    prefix = f"{name}." if name else ""
                    pairs.append((prefix + n1, prefix + n2))
    return pairs


def fold_batchnorms(
    model: nn.Module, *, keep: Callable[[str], bool] = lambda name: False
) -> list[tuple[str, str]]:
    """Fold every BatchNorm that follows a Conv/Linear into it and replace it by ``nn.Identity``.

    Args:
        model: a float model in eval mode (folding uses the running statistics); changed in place.
        keep: ``keep(name) -> True`` leaves that layer or BatchNorm alone (e.g. skipped layers).

    Returns:
        The folded ``(layer, batchnorm)`` name pairs.
    """
    if model.training:
        raise InputError(
            "fold BatchNorms in eval mode (model.eval()); training mode uses batch statistics"
        )
    done = []
    for layer_name, bn_name in find_pairs(model):
        if keep(layer_name) or keep(bn_name):
            continue
        fold_pair(model.get_submodule(layer_name), cast(_BN, model.get_submodule(bn_name)))
        parent_name, _, attr = bn_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, nn.Identity())
        done.append((layer_name, bn_name))
    return done


def _bn_dims(model: nn.Module, example: tuple | None) -> dict[str, int]:
    """Spatial dimensions (1, 2, 3) of each SyncBatchNorm: from its input on ``example``
    (one eval-mode forward), else from the Conv/Linear before it, else 2."""
    syncs = {
        n: m for n, m in model.named_modules() if isinstance(m, (nn.SyncBatchNorm, SyncedBatchNorm))
    }
    dims: dict[str, int] = {}
    if syncs and example is not None:
        hooks = [
            m.register_forward_pre_hook(
                lambda mod, args, name=n: dims.setdefault(name, max(1, min(3, args[0].ndim - 2)))
            )
            for n, m in syncs.items()
        ]
        was_training = model.training
        try:
            with torch.no_grad():
                model.eval()(*example)
        except Exception:  # noqa: BLE001, S110 - the graph capture reports a failing forward itself
            pass
        finally:
            model.train(was_training)
            for h in hooks:
                h.remove()
    modules = dict(model.named_modules())
    for layer, bn in find_pairs(model):
        weight = getattr(modules[layer], "weight", None)
        if bn in syncs and bn not in dims and weight is not None:
            dims[bn] = max(1, weight.ndim - 2)
    return {n: dims.get(n, 2) for n in syncs}


def plain_batchnorms(model: nn.Module, example: tuple | None = None) -> dict[str, nn.SyncBatchNorm]:
    """Replace every ``nn.SyncBatchNorm`` by the BatchNorm1d/2d/3d its input needs, sharing
    the same parameter and buffer tensors (in place).

    Args:
        model: the float model.
        example: example positional inputs that tell 1d/2d/3d apart (else the layer before
            each SyncBatchNorm tells).

    Returns:
        ``{name: the original SyncBatchNorm}``; each remembers its dimension for
        :func:`sync_batchnorms_back` / :func:`plain_batchnorms` later.

    Example:
        >>> syncs = plain_batchnorms(model, (x,))   # {"features.1": SyncBatchNorm(...)}
    """
    originals: dict[str, nn.SyncBatchNorm] = {}
    for name, dim in _bn_dims(model, example).items():
        sync = cast(nn.SyncBatchNorm, model.get_submodule(name))
        sync.__dict__["_quantlens_bn_dim"] = dim  # a plain int attribute, kept by deepcopy
        _replace(model, name, _as_plain(sync, dim))
        originals[name] = sync
    return originals


def _as_plain(sync: _BN, dim: int) -> nn.Module:
    bn = _PLAIN[dim](
        sync.num_features, sync.eps, sync.momentum, sync.affine, sync.track_running_stats
    )
    for key in ("weight", "bias"):
        setattr(bn, key, getattr(sync, key))
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        setattr(bn, key, getattr(sync, key))
    return bn.train(sync.training)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, module)


def sync_batchnorms_back(model: nn.Module, originals: dict[str, nn.SyncBatchNorm]) -> list[str]:
    """Put the SyncBatchNorms of :func:`plain_batchnorms` back wherever their tensors now
    live (a fused QAT Conv+BN's ``bn`` included), so training stays synchronised; each
    becomes a :class:`SyncedBatchNorm`, which synchronises on CPU too.

    Returns:
        The names of the modules that are SyncBatchNorm again.
    """
    by_stats = {id(s.running_mean): s for s in originals.values() if s.running_mean is not None}
    back = []
    for name, module in list(model.named_modules()):
        sync = by_stats.get(id(getattr(module, "running_mean", None)))
        if name and isinstance(module, BATCHNORMS) and sync is not None and module is not sync:
            sync.__class__ = SyncedBatchNorm  # type: ignore[assignment]  # no subclass, on purpose
            sync.train(module.training)
            _replace(model, name, sync)
            back.append(name)
    return back


def unsync_batchnorms(model: nn.Module) -> list[str]:
    """Replace the SyncBatchNorms left in a prepared model by plain BatchNorms sharing their
    tensors (in place), so converting folds them; returns their names."""
    names = [
        n for n, m in model.named_modules() if isinstance(m, (nn.SyncBatchNorm, SyncedBatchNorm))
    ]
    for name in names:
        sync = cast(_BN, model.get_submodule(name))
        _replace(model, name, _as_plain(sync, getattr(sync, "_quantlens_bn_dim", 2)))
    return names
