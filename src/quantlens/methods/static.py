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

import functools
from dataclasses import dataclass
from typing import Literal, cast, get_args

import torch
from torch import nn

from quantlens.core import distributed
from quantlens.core.data import Batch
from quantlens.core.observers import ObserverName, get_observer
from quantlens.errors import ConfigError, QuantizationFailedError
from quantlens.methods import (
    bn_pairs,
    fusion,
    int8_check,
    int8_choice,
    int8_fallback,
    int8_graph,
    int8_inputs,
    int8_regions,
    smoothing,
)
from quantlens.methods.backends import torch_ao
from quantlens.methods.backends.torch_ao import Backend
from quantlens.methods.base import (
    SKIP_REASON,
    QuantConfig,
    QuantContext,
    configs_in,
    register_method,
    resolve,
)
from quantlens.methods.int8_state import int8_state

StaticMode = Literal["auto", "fx", "eager"]
"""How Static captures the model: graph mode with the eager fallback, or only one of them."""
MODES: tuple[str, ...] = get_args(StaticMode)


@dataclass(frozen=True)
class Static(QuantConfig):
    """Static int8: weights and activations int8, activation ranges from calibration data.

    Args:
        backend: quantized engine: ``"x86"``, ``"fbgemm"``, ``"onednn"`` or ``"qnnpack"``.
        observer: activation range estimator from ``quantlens.core.observers``:
            ``"auto"`` (default: per captured graph or region, whichever of mse, entropy,
            percentile and minmax gives the output closest to float on the first
            calibration batch; see :mod:`quantlens.methods.int8_choice`), ``"histogram"``
            (= ``"mse"``), ``"minmax"``, ``"moving_average"``, ``"percentile"``,
            ``"entropy"``, ``"meanstd"``.
        weight_observer: weight range estimator (per output channel with ``per_channel``).
        per_channel: one weight scale per output channel (else one per tensor).
        fuse: fold BatchNorm and fuse ReLU into the preceding Conv/Linear. Graph mode always
            folds Conv+BN (PyTorch has no int8 Conv->BN pair); ``fuse=False`` keeps the
            BatchNorms of the eager fallback as separate layers.
        calib_batches: stop calibration after this many batches (None: all).
        mode: ``"auto"`` (graph mode, eager fallback), ``"fx"`` or ``"eager"``.
        sync: under ``torch.distributed`` (a process group initialised, e.g. by ``torchrun``),
            merge every rank's observer statistics before converting, so that each rank
            converts with the parameters one process over all ranks' data would choose;
            False keeps each rank's own. Nothing changes outside a process group.
        auto_fallback: when the int8 model's output on the first calibration batch agrees
            with float below cosine :data:`~quantlens.methods.int8_check.AGREEMENT_FLOOR`,
            leave the captured regions that cost the most in float (worst first, measured by
            running each alone in int8), until the floor is reached or half of them are
            float; each one's summary reason gives the cosine before and after
            (:mod:`quantlens.methods.int8_fallback`). Applies to models captured by regions;
            False keeps every region int8 and only warns.
        smoothquant: None (default), a migration strength ``alpha`` in [0, 1] or ``"auto"``:
            before calibration, move activation outliers into the weights with SmoothQuant
            (:mod:`quantlens.methods.smoothing`; ``"auto"`` scores per-tensor int8).
        skip, overrides: see :class:`QuantConfig`; skipped layers stay float.
    """

    backend: Backend = "x86"
    observer: ObserverName = "auto"
    weight_observer: ObserverName = "minmax"
    per_channel: bool = True
    fuse: bool = True
    calib_batches: int | None = None
    mode: StaticMode = "auto"
    sync: bool = True
    auto_fallback: bool = True
    smoothquant: float | str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "smoothquant", smoothing.check_alpha(self.smoothquant, "Static"))
        if self.backend not in torch_ao.BACKENDS:
            raise ConfigError(
                f"unknown backend {self.backend!r}; choose one of: {', '.join(torch_ao.BACKENDS)}"
            )
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.calib_batches is not None and self.calib_batches < 1:
            raise ConfigError(f"calib_batches must be >= 1 or None, got {self.calib_batches}")
        for name in (self.observer, self.weight_observer):
            get_observer(name)  # raises UnknownNameError listing the valid names


def _qconfig(cfg: Static):
    return torch_ao.make_qconfig(
        cfg.backend,
        observer=cfg.observer,
        weight_observer=cfg.weight_observer,
        per_channel=cfg.per_channel,
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
    """Capture the graph, fuse and insert observers (graph mode): the whole model, else its
    traceable regions (:mod:`quantlens.methods.int8_regions`), else the eager fallback."""
    cfg = _root(ctx)
    torch_ao.use_engine(cfg.backend)
    model = int8_graph.wrap_leaf_root(model).eval()
    batch = int8_inputs.example_batch(ctx)
    desc = int8_inputs.describe_inputs(batch.args, batch.kwargs)
    before = int8_graph.float_layers(model)
    state = int8_state(ctx)
    state.method, state.float_layers = "static", before
    state.example_desc, state.example_batch = desc, batch
    # the first-run check after converting runs this: positional inputs, or the whole batch
    state.example = batch if batch.kwargs else batch.args
    state.float_reference = int8_check.output_of(model, batch)
    syncs = fusion.plain_batchnorms(model, None if batch.kwargs else batch.args)
    if syncs:
        ctx.summary.note(
            f"{len(syncs)} SyncBatchNorm layer(s) fused and folded as BatchNorm (the same function "
            "in eval mode)"
        )
    if cfg.mode != "eager":
        plan = int8_graph.make_plan(model, ctx.config, Static)
        _token_inputs(model, plan, batch, ctx)
        example = int8_inputs.keyword_root(model, batch)
        try:
            prepared = int8_graph.capture(
                model,
                plan,
                plan.mapping(_qconfig, qat=False),
                example,
                qat=False,
                keep_islands=lambda bad: (
                    not int8_regions.regions_cover_more(model, batch, ctx.config, Static, bad)
                ),
            )
        except QuantizationFailedError as exc:
            int8_inputs.plain_root(model)
            if cfg.fuse:
                _fold(model, ctx)
            regions = int8_regions.capture_regions(
                model, batch, ctx.config, Static, _qconfig, qat=False
            )
            if regions:
                state.regions = regions
                ctx.summary.note(int8_regions.regions_note(regions, exc))
                int8_graph.preserve(model, quantlens_example_inputs=desc)
                return model
            if cfg.mode == "fx":
                raise QuantizationFailedError(
                    f"{exc}; use mode='auto' for the eager fallback"
                ) from exc
            ctx.summary.note(
                f"graph capture failed ({str(exc)[:160]}); used the layer-wise eager fallback"
            )
            return _eager_prepare(model, ctx, cfg)
        state.plan, state.example = plan, example  # positional, in the graph's input order
        int8_graph.preserve(prepared, quantlens_example_inputs=desc)
        return prepared
    return _eager_prepare(model, ctx, cfg)


def convert(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """Turn an observed (calibrated) model into int8 kernels and record the summary."""
    cfg = _root(ctx)
    torch_ao.use_engine(cfg.backend)
    state = int8_state(ctx)
    rebuilding = state.rebuilding  # a load: one rank may load alone, nothing to merge
    if cfg.sync and not rebuilding and int8_graph.sync_observers(model):
        ctx.summary.note(f"observer statistics merged over {distributed.world_size()} ranks")
    int8_graph.require_calibrated(model)
    int8_graph.to_kernel_host(model, ctx.summary)
    plan, regions = state.plan, state.regions
    measure = not rebuilding  # a skeleton's random batch measures nothing
    before = state.float_layers
    custom = int8_graph.custom_modules()

    def to_int8(
        observed: nn.Module, example
    ) -> nn.Module:  # converted, repaired where its first run fails
        converted = torch_ao.convert(observed, backend=cfg.backend, custom_modules=custom)
        int8_check.contiguous_views(converted, ctx.summary)
        int8_check.first_run(converted, example, ctx.summary)
        return converted

    choices: dict[str, int8_choice.Choice] = {}
    floated: list[str] = []
    if regions:
        for region in regions if measure else ():
            got = int8_choice.choose(
                model.get_submodule(region.name),
                Batch(region.example),
                functools.partial(to_int8, example=region.example),
                merge_ranks=cfg.sync,
            )
            if got is not None:
                choices[region.name] = got
        if rebuilding:  # the regions the checkpoint records as float
            wanted: list[str] | None = int8_fallback.saved_float_regions(ctx.example_inputs)
        else:  # every region may go float, or none
            wanted = None if cfg.auto_fallback else []
        floats = int8_fallback.float_copies(model, regions, choices, wanted)
        plan = int8_regions.convert_regions(
            model, regions, ctx.config, Static, custom, choices, int8_choice.float_reason
        )
        if rebuilding:
            floated = int8_fallback.restore(model, regions, floats, plan)
        else:
            example, reference = state.example, state.float_reference
            floated = int8_fallback.back_off_regions(
                model, regions, floats, plan, ctx.summary, example, reference
            )
        floated += [n for n, c in choices.items() if c.keep_float]
        before = int8_regions.rename_layers(before, regions)
        choices = {
            r.name + (".module" if r.leaf else ""): choices[r.name]
            for r in regions
            if r.name in choices
        }
        converted = model
    elif plan is None:  # eager fallback
        converted = torch_ao.eager_convert(model)
        plan = int8_graph.Plan(cfg.backend, cfg, reasons=state.eager_reasons)
    else:
        got = (
            int8_choice.choose(
                model,
                state.example_batch,
                lambda m: to_int8(m, state.example),
                merge_ranks=cfg.sync,
            )
            if (measure and state.example_batch is not None)
            else None
        )
        choices = {"": got} if got is not None else {}
        converted = (
            got.converted
            if got is not None and got.converted is not None
            else torch_ao.convert(model, backend=cfg.backend, custom_modules=custom)
        )
    int8_check.check_converted(converted, ctx)
    int8_graph.summarize(ctx, before, converted, plan, _detail(cfg))
    int8_choice.record_choices(ctx, choices)
    desc = state.example_desc
    if (
        regions and floated and desc is not None
    ):  # a checkpoint's rebuild leaves the same regions float
        desc = {**desc, int8_fallback.SAVED_KEY: sorted(set(floated))}
    int8_graph.preserve(converted, quantlens_example_inputs=desc)
    return converted


def apply(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """Prepare, calibrate over ``ctx.calib_data`` (with a progress bar), convert."""
    cfg = _root(ctx)
    if cfg.smoothquant is not None:
        names = [
            n
            for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and ctx.config_for(n, Static)
        ]
        smoothing.smooth(model, names, ctx, cfg.smoothquant, per_token=False, sync=cfg.sync)
    prepared = prepare(model, ctx)
    n = int8_graph.calibrate(prepared, ctx, cfg.calib_batches or ctx.calib_batches)
    ctx.summary.note(f"calibrated on {n} batch(es) with the {cfg.observer} observer")
    return convert(prepared, ctx)


def rebuild(model: nn.Module, ctx: QuantContext) -> nn.Module:
    """The int8 structure of a float skeleton, from the recorded example input shapes (the
    observers see one random batch; the checkpoint's tensors replace every value)."""
    int8_state(ctx).rebuilding = True
    prepared = prepare(model, ctx)
    with torch.no_grad(), torch_ao.quiet():
        int8_inputs.make_batch(int8_state(ctx).example_desc).run(prepared)
    return convert(prepared, ctx)


# --- eager fallback --------------------------------------------------------------------------


def _token_inputs(model: nn.Module, plan: int8_graph.Plan, batch: Batch, ctx: QuantContext) -> None:
    """Integer inputs (token ids, masks): int8 for Conv/Linear layers only (see
    :func:`quantlens.methods.int8_regions.layers_only`)."""
    if int8_regions.has_integer_inputs(batch):
        int8_regions.layers_only(model, plan)
        ctx.summary.note(
            "integer inputs (token ids / masks): only Conv/Linear layers run int8; "
            "the ops between them (attention math, residual adds, norms) stay float"
        )


def _fold(model: nn.Module, ctx: QuantContext) -> None:
    """Fold the BatchNorms that follow a Static Conv/Linear (the graph-mode fusion's job,
    for the paths without a whole-model graph)."""
    keep = lambda name: not isinstance(resolve(ctx.config, name), Static)
    folded = fusion.fold_batchnorms(model, keep=keep)
    batch = int8_state(ctx).example_batch
    for layer, bn in bn_pairs.runtime_pairs(model, batch) if batch is not None else ():
        if not (keep(layer) or keep(bn)):  # (pairs torch.fx could not see: found by running)
            bn_module = cast(nn.modules.batchnorm._BatchNorm, model.get_submodule(bn))
            fusion.fold_pair(model.get_submodule(layer), bn_module)
            parent, _, attr = bn.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, nn.Identity())
            folded.append((layer, bn))
    if folded:
        ctx.summary.note(
            "folded BatchNorm into the layer before it: " + ", ".join(b for _, b in folded)
        )
        int8_state(ctx).float_layers = int8_graph.float_layers(model)


def _eager_prepare(model: nn.Module, ctx: QuantContext, cfg: Static) -> nn.Module:
    def floated(name: str) -> bool:
        return not isinstance(resolve(ctx.config, name), Static)

    reasons = {}
    if cfg.fuse:
        _fold(model, ctx)
    targets = []
    reasons.update(int8_graph.standardize_subclasses(model, lambda name: not floated(name)))
    for name, module in model.named_modules():
        if not name or list(module.children()) or name in reasons:
            continue
        if floated(name):
            if resolve(ctx.config, name) is None:
                reasons[name] = SKIP_REASON
        elif isinstance(module, torch_ao.EAGER_TYPES):
            targets.append(name)
    state = int8_state(ctx)
    for name, (_, nbytes) in state.float_layers.items():
        if nbytes and name not in targets and name not in reasons:
            module = model.get_submodule(name)
            reasons[name] = (
                fusion.norm_reason(module)
                if isinstance(module, fusion.PER_SAMPLE_NORMS)
                else "eager fallback quantizes Conv/Linear layers only"
            )
    state.eager_reasons = reasons
    torch_ao.eager_wrap(model, targets)
    prepared = torch_ao.eager_prepare(model, _qconfig(cfg), targets)
    state.float_layers = {
        (f"{n}.module" if n in targets else n): v for n, v in state.float_layers.items()
    }
    return prepared


register_method(
    "static", Static, apply=apply, rebuild=rebuild, prepare=prepare, convert=convert, order=10
)

__all__ = ["Static", "register_custom_module"]
register_custom_module = int8_graph.register_custom_module
